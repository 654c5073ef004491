"""`hep2 ensemble`: one model from several finished runs made on the same splits (late fusion).

The members' class probabilities are averaged with equal weights, cell by cell: nothing is fitted,
so nothing is chosen on the test cells. The figures come from the members' own predictions on each
split's test cells (their predictions.csv); the model is the members' final models (model/), which
`hep2 predict`, `hep2 serve` and the Python API load like any run's.

With ``neighbours`` K (transductive, off by default) each test cell's averaged probabilities are then
averaged, half and half, with the mean of its K nearest cells of the same test batch: a split's test
cells here, the files of one `hep2 predict` call there. Cells of one specimen share their pattern and
look alike, so the batch votes. Nearness is cosine, in the members' features (each standardised and
reduced to 50 principal components, fitted on the cells the classifier was trained on, then scaled
to unit length, side by side). The test cells' labels are never read; their images are.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .. import distributed as dd
from ..data.images import atomic_write_bytes
from ..errors import Hep2Error
from ..training import load_checkpoint
from .evaluation import (
    SPECIMEN_PROTOCOLS,
    classification_metrics,
    specimen_figure,
    split_figures,
    split_metrics,
    summarize_protocol,
)
from .neighbours import BatchNeighbours, cell_features  # noqa: F401  (BatchNeighbours: the API's)
from .predict import comparison_folder, save_ensemble
from .runfolder import environment, prepare_out, write_csv, write_json


def _read_run(run: Path) -> dict:
    """A finished run folder's protocol, data, test-cell probabilities and model."""
    if not run.is_dir():
        raise Hep2Error(f"run folder {run} does not exist: give the folders that `hep2 run` / `hep2 compare` wrote")
    files = {name: run / name for name in ("metrics.json", "config.json", "data.json", "predictions.csv")}
    missing = [n for n, f in files.items() if not f.is_file()] + (
        [] if (run / "model" / "pipeline.pt").is_file() else ["model/pipeline.pt"]
    )
    if missing:
        comparison_folder(run)
        raise Hep2Error(
            f"{run} is not a finished run folder of `hep2 run` / `hep2 compare` (missing: "
            f"{', '.join(missing)}): give run folders whose runs ended"
        )
    try:
        metrics, config, data = (json.loads(files[n].read_text()) for n in ("metrics.json", "config.json", "data.json"))
        classes = list(data["classes"])
        with open(files["predictions.csv"], newline="") as f:
            rows = list(csv.DictReader(f))
        table = {
            (r["split"], r["id"]): (classes.index(r["true"]), np.array([float(r["p_" + c]) for c in classes]))
            for r in rows
        }
        # runs of a protocol that holds specimens out, on cells that name theirs, keep them
        specimens = {r["id"]: r["specimen"] for r in rows} if rows and "specimen" in rows[0] else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Hep2Error(
            f"{run}: cannot read its metrics.json / config.json / data.json / predictions.csv "
            f"({type(e).__name__}: {e}); rerun it with `hep2 run`"
        ) from None
    if not table:
        raise Hep2Error(f"{run}/predictions.csv has no rows: the run evaluated no test cell")
    if config.get("method") == "ensemble":
        raise Hep2Error(f"{run} is itself an ensemble: give its member runs (listed in its config.json) instead")
    return {
        "run": run,
        "metrics": metrics,
        "config": config,
        "data": data,
        "classes": classes,
        "table": table,
        "specimens": specimens,
    }


FULL = "full"  # the split name of an official run's train/ -> test/ rows


def _keys(member: dict, full: bool = False) -> set:
    """The member's (split, id) keys of its splits, or with ``full`` of its train/ -> test/ rows."""
    return {k for k in member["table"] if (k[0] == FULL) == full}


def _member_features(member: dict) -> dict | None:
    """{cell id: that cell's feature vector} from a member's features.npy, or None where the method
    keeps none (the CNNs)."""
    run = member["run"]
    if not (run / "features.npy").is_file():
        return None
    try:
        F = cell_features(member["model"]["features"], np.load(run / "features.npy"))
        with open(run / "features_ids.csv", newline="") as f:
            ids = [r["id"] for r in csv.DictReader(f)]
    except Hep2Error:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise Hep2Error(
            f"{run}: cannot read features.npy / features_ids.csv ({type(e).__name__}: {e}); rerun it with `hep2 run`"
        ) from None
    if len(ids) != len(F):
        raise Hep2Error(f"{run}: features.npy has {len(F)} rows, features_ids.csv {len(ids)}: rerun it with `hep2 run`")
    return dict(zip(ids, F))


def _training_cells(base: dict) -> dict:
    """{split: ids of the cells its classifier was trained on}, from the members' dataset and protocol
    ("full" and "final": all of train/ under official; else the protocol's pool)."""
    from ..data import load_images, open_dataset
    from .evaluation import protocol_splits

    config, data = base["config"], base["data"]
    preset = config.get("preset") or {}
    skipped = bool((data.get("skipped") or {}).get("count"))
    try:
        cells = open_dataset(config["dataset"], skip_bad=skipped)
        if skipped:  # the run left its unreadable images out (--skip-bad): leave the same ones out
            cells = load_images(cells, base["model"]["features"].preprocess(), skip_bad=True)[1]
    except Hep2Error as e:
        raise Hep2Error(
            f"--neighbours needs the members' dataset to know each split's training cells, and "
            f"{config['dataset']} cannot be read from here ({e}): run hep2 ensemble from the folder "
            "the members were made in"
        ) from None
    if cells.fingerprint() != data.get("fingerprint"):
        raise Hep2Error(
            f"{config['dataset']} is no longer the data {base['run']} was made with (another "
            "fingerprint): --neighbours needs the same data; rerun the members"
        )
    splits, pool = protocol_splits(
        cells,
        config["protocol"],
        subset=config.get("subset") or "train",
        folds=preset.get("cv_folds", 5),
        seed=preset.get("seed", 0),
    )

    def ids(idx):
        return [cells.cells[i].id for i in idx]

    out = {name: ids(a) for name, a, _ in splits}
    out[FULL] = out["final"] = ids(cells.subsets["train"] if config["protocol"] == "official" else pool)
    return out


def make_ensemble(runs, out, *, verbose: bool = True, neighbours: int = 0) -> dict:
    """Average the runs' probabilities on their shared splits; write a run folder (metrics, predictions,
    report, and the members' models as one loadable model). ``neighbours`` K > 0: then smooth each
    split's test cells over their K nearest test cells (`BatchNeighbours`; transductive)."""
    from .report import confusion_figure, html_page, results_markdown

    t0 = time.perf_counter()
    if isinstance(runs, (str, Path)):
        raise Hep2Error(f"runs={str(runs)!r}: give a list of run folders, e.g. ['runs/a', 'runs/b']")
    runs, out = [Path(r) for r in runs], Path(out)
    if len(runs) < 2:
        raise Hep2Error("hep2 ensemble needs at least two run folders")
    seen = {}
    for r in runs:
        if r.resolve() in seen:
            raise Hep2Error(
                f"{r} is given twice (as {seen[r.resolve()]} before): each member counts once (equal weights)"
            )
        seen[r.resolve()] = r
    if out.resolve() in {r.resolve() for r in runs}:
        raise Hep2Error(f"--out {out} is one of the members: choose a new folder")
    dd.barrier()  # under torchrun: rank 0 has written the members (`hep2 compare --ensemble`)
    members = [_read_run(r) for r in runs]
    for r in runs:
        if r.resolve() in out.resolve().parents:
            raise Hep2Error(f"--out {out} is inside the member {r}: choose a new folder outside the members")
    base = members[0]
    for m in members[1:]:
        for what, key in (
            ("protocol", lambda r: r["metrics"].get("protocol")),
            ("dataset (its fingerprint)", lambda r: r["data"].get("fingerprint")),
            ("classes", lambda r: r["classes"]),
        ):
            if key(m) != key(base):
                raise Hep2Error(
                    f"{m['run']}: its {what} {key(m)!r} differs from {base['run']}'s {key(base)!r}: "
                    "an ensemble's members must be runs on the same data under the same protocol"
                )
        if _keys(m) != _keys(base):
            raise Hep2Error(
                f"{m['run']}: its splits or test cells differ from {base['run']}'s (made with another "
                "seed, subset or --skip-bad?): members must share every split"
            )
    if neighbours or dd.is_main():  # the features need them on every rank; otherwise only rank 0 saves them
        for m in members:
            m["model"] = load_checkpoint(m["run"] / "model" / "pipeline.pt")
    if neighbours:
        BatchNeighbours(neighbours)  # a bad K stops here, before anything is written
        sizes = Counter(split for split, _ in base["table"])
        if min(sizes.values()) <= neighbours:
            split = min(sizes, key=sizes.get)
            raise Hep2Error(
                f"--neighbours {neighbours} averages each test cell with {neighbours} others of its split, "
                f"and split {split} holds {sizes[split]} test cells: give a K below {sizes[split]}"
            )
        feats = [_member_features(m) for m in members]
        if not any(f is not None for f in feats):
            raise Hep2Error(
                "--neighbours measures nearness in the members' features, and no member keeps any "
                "(features.npy): add a member such as dcae-mlp or bow"
            )
        in_space = [i for i, f in enumerate(feats) if f is not None]  # the members whose features count
        feats = [feats[i] for i in in_space]
        trained_on = _training_cells(base)
        for split in dict.fromkeys(s for s, _ in base["table"]):
            if split not in trained_on:
                raise Hep2Error(
                    f"split {split!r} of {base['run']} is not one of its protocol's splits on "
                    f"{base['config']['dataset']} now: rerun the members"
                )
        needed = {i for _, i in base["table"]} | {i for ids in trained_on.values() for i in ids}
        for i, f in zip(in_space, feats):
            missing = sorted(needed - f.keys())
            if missing:
                raise Hep2Error(
                    f"{members[i]['run']}/features.npy has no features for {len(missing)} cells the "
                    f"splits use (first: {missing[0]}): rerun that member with `hep2 run`"
                )

        def blocks(ids):
            return [np.stack([f[i] for i in ids]) for f in feats]

    prepare_out(out, resume=False, kind="ensemble")
    say = print if verbose and dd.is_main() else (lambda *a, **k: None)
    classes, protocol = base["classes"], base["metrics"]["protocol"]
    per_split, rows, y_all, p_all, extra = {}, [], [], [], {}
    specimens = base["specimens"] if protocol in SPECIMEN_PROTOCOLS else None
    # official runs also hold "full" rows (train/ -> test/); members from before that have none
    full = bool(_keys(base, True)) and all(_keys(m, True) == _keys(base, True) for m in members)
    if not full and any(_keys(m, True) for m in members):
        say(
            "  no `full` figure: not every member holds the same train/ -> test/ predictions (runs made before "
            "runs kept them have none)"
        )
    for split in dict.fromkeys(s for s, _ in base["table"] if s != FULL or full):
        keys = [k for k in base["table"] if k[0] == split]
        y = np.array([base["table"][k][0] for k in keys])
        proba = np.mean([[m["table"][k][1] for k in keys] for m in members], axis=0)
        if neighbours:
            proba = (
                BatchNeighbours(neighbours).fit(blocks(trained_on[split])).smooth(proba, blocks([k[1] for k in keys]))
            )
        pred = proba.argmax(1)
        rows += [
            [split, k[1], *([specimens[k[1]]] if specimens else []), classes[t], classes[p], *np.round(pr, 5)]
            for k, t, p, pr in zip(keys, y, pred, proba)
        ]
        figures = split_metrics(y, proba, classes, [specimens[k[1]] for k in keys] if specimens else None)
        if split == FULL:
            extra["full"] = figures
            say(f"  full (train/ -> test/): {split_figures(figures)}")
            continue
        per_split[split] = figures
        y_all.append(y)
        p_all.append(pred)
        say(f"  {split}: {split_figures(figures)}")
    pooled = classification_metrics(np.concatenate(y_all), np.concatenate(p_all), classes)
    described = [
        {
            "run": str(m["run"]),
            "method": m["config"].get("method"),
            "preset": (m["config"].get("preset") or {}).get("name"),
            "accuracy": m["metrics"]["accuracy"]["mean"],
            "mca": m["metrics"]["mca"]["mean"],
            "command": m["config"].get("command"),
        }
        for m in members
    ]
    metrics = summarize_protocol(
        protocol,
        per_split,
        pooled,
        extra
        | {
            "dataset": base["metrics"].get("dataset"),
            "preset": "–",
            "method": "ensemble",
            "members": described,
            "paper_accuracy": None,
            "n_splits": len(per_split),
            "neighbours": neighbours or None,
            "autoencoder_saw_test_images": any(m["metrics"].get("autoencoder_saw_test_images") for m in members),
        },
    )
    metrics["seconds"] = {"total": round(time.perf_counter() - t0, 1)}
    if not dd.is_main():  # under torchrun (`hep2 compare --ensemble`): rank 0 writes
        return metrics
    (out / "model").mkdir(exist_ok=True)
    save_ensemble(
        out / "model",
        [m["model"] for m in members],
        classes,
        neighbours=BatchNeighbours(neighbours, members=in_space).fit(blocks(trained_on["final"]))
        if neighbours
        else None,
    )
    write_json(
        out / "config.json",
        {
            "method": "ensemble",
            "protocol": protocol,
            "dataset": base["config"].get("dataset"),
            "members": described,
            "weights": "equal",
            "neighbours": neighbours or None,
            "command": " ".join(sys.argv),
        },
    )
    write_json(out / "data.json", base["data"])
    write_json(out / "environment.json", environment())
    write_csv(
        out / "predictions.csv",
        ["split", "id", *(["specimen"] if specimens else []), "true", "predicted"] + [f"p_{c}" for c in classes],
        rows,
    )
    metrics["seconds"] = {"total": round(time.perf_counter() - t0, 1)}
    write_json(out / "metrics.json", metrics)
    confusion_figure(
        metrics,
        out / "confusion.png",
        f"{metrics['dataset']} | {protocol}, ensemble of {len(members)}"
        + (f", transductive (--neighbours {neighbours})" if neighbours else "")
        + f" | accuracy {metrics['accuracy']['mean']:.2%}",
    )
    md = "\n".join(
        [
            f"# hep2 ensemble: {metrics['dataset']}",
            "",
            f"- **Protocol**: `{protocol}`: {metrics['protocol_description']}",
            f"- **Method**: the equal-weight average of {len(members)} runs' class probabilities, cell by cell; "
            + (
                f"then, **transductive**, each test cell's probabilities averaged half and half with the mean of its "
                f"{neighbours} nearest cells of the same test split (cosine, in the members' features; the test "
                "labels are never read, the test images are)"
                if neighbours
                else "nothing fitted on top"
            ),
            "",
            "| member run | method | preset | accuracy | MCA |",
            "|---|---|---|---|---|",
            *[
                f"| `{d['run']}` | `{d['method']}` | `{d['preset']}` | {d['accuracy']:.4f} | {d['mca']:.4f} |"
                for d in described
            ],
            "",
            "> "
            + (
                "At least one member's autoencoder saw the held-out cells' images (no labels)."
                if metrics["autoencoder_saw_test_images"]
                else "No member's autoencoder saw the test images."
            )
            + (
                " **Transductive**: each test cell's figure also used the other test images of its split (never their "
                "labels); compare it with transductive figures only."
                if neighbours
                else ""
            ),
            "",
            results_markdown(metrics),
            "Files: config.json (the members and their commands), metrics.json, predictions.csv, "
            "model/ (every member's model, for `hep2 predict`).",
            "",
        ]
    )
    atomic_write_bytes(out / "report.md", md.encode())
    atomic_write_bytes(out / "report.html", html_page(md, out).encode())
    say(
        f"accuracy {metrics['accuracy']['mean']:.4f} ± {metrics['accuracy']['std']:.4f}, MCA "
        f"{metrics['mca']['mean']:.4f} ± {metrics['mca']['std']:.4f}{specimen_figure(metrics)} ({protocol}, "
        f"ensemble of {len(members)}"
        + (f", each test cell smoothed over its {neighbours} nearest of its split: transductive" if neighbours else "")
        + f") -> {out}"
    )
    return metrics


__all__ = ["FULL", "make_ensemble"]
