"""`hep2 run`: from a dataset to a trained model, honest figures and a report in one run folder."""

from __future__ import annotations

import io
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import distributed as dd
from ..data import load_images, open_dataset
from ..data.images import atomic_write_bytes
from ..data.readers import SNPHEP2_NAMING
from ..errors import Hep2Error
from ..presets import Preset, check_preset
from ..training import bf16_is_native, precision, resolve_device
from .evaluation import (
    SPECIMEN_PROTOCOLS,
    classification_metrics,
    protocol_splits,
    specimen_figure,
    split_figures,
    split_metrics,
    summarize_protocol,
)
from .methods import get_method
from .predict import full_proba, save_model
from .runfolder import check_disk_space, check_same_run, environment, prepare_out, run_subset, write_csv, write_json
from .tree import StandardisedClassifier, fit_classifier


def run(
    dataset: str | list[str],
    *,
    protocol: str = "cv",
    cfg: Preset,
    out,
    subset: str = "train",
    resume: bool = False,
    skip_bad: bool = False,
    verbose: bool = True,
    ae_on_test: bool = False,
    method: str = "dcae-mlp",
    target: str | list[str] | None = None,
) -> dict:
    """Fit the method's unsupervised stage (the DCAE, no labels), extract features, evaluate the
    classifier under ``protocol``, train the final classifier on all labelled training cells, and
    write the run folder.

    ``dataset`` may name several datasets, read as one (`hep2.data.readers.combine`). Under ``protocol``
    ``transfer`` the classifier learns from ``dataset`` and is scored once on ``target`` (another lab's cells);
    with ``ae_on_test`` the unsupervised stage also reads the target's images (never its labels)."""
    t_start = time.perf_counter()
    check_preset(cfg)
    out = Path(out)
    device = resolve_device(cfg.device)  # a device that is not there stops before anything is written
    main = dd.is_main()  # under torchrun every process computes, rank 0 writes and reports
    verbose = verbose and main
    say = print if verbose else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    m = get_method(method, cfg)
    if ae_on_test and protocol not in ("official", "transfer"):
        raise Hep2Error(
            f"--ae-on-test is for --protocol official or transfer; under {protocol} the autoencoder already reads "
            "every cell of the subset (no labels): drop it"
        )
    if target is not None and protocol != "transfer":
        raise Hep2Error(f"--target is for --protocol transfer; under {protocol} drop it, or use --protocol transfer")
    if protocol == "transfer":
        cells = open_transfer(dataset, target, skip_bad)
    else:
        cells = open_dataset(dataset, skip_bad=skip_bad)
    if main and m.preprocess().channel == "mean":
        cells.problems += sampled_colour_problems(cells)
    for problem in cells.problems if main else ():
        print(f"hep2: warning: {problem}", file=sys.stderr)
    subset = run_subset(cells, protocol, subset)
    splits, ae_idx = protocol_splits(cells, protocol, subset=subset, folds=cfg.cv_folds, seed=cfg.seed)
    if m.unsupervised and dd.is_main():
        check_disk_space(out, cfg)
    prepare_out(out, resume)  # after the checks of data, protocol and disk: a refused run writes nothing
    prep = m.preprocess()
    say(f"hep2 run: {cells.name}, method {method}, protocol {protocol}, preset {cfg.name}, {len(cells)} cells -> {out}")
    images, kept = load_images(cells, prep, skip_bad=skip_bad, progress=verbose)
    if len(kept) != len(cells):  # --skip-bad dropped images: recompute the splits on what is left
        say(f"skipped {len(cells) - len(kept)} unreadable images (listed in data.json)")
        cells = kept
        splits, ae_idx = protocol_splits(cells, protocol, subset=subset, folds=cfg.cv_folds, seed=cfg.seed)
    if ae_on_test and protocol in ("official", "transfer"):
        ae_idx = np.arange(len(cells))
    # the cells that get features: the autoencoder's, every split's, and all of test/ for `full`
    split_k = protocol == "official" and bool(cells.official_splits())  # else official is train/ -> test/ once
    full_test = [cells.subsets["test"]] if split_k else []
    used = np.unique(np.concatenate([ae_idx, *full_test] + [np.concatenate([a, b]) for _, a, b in splits]))
    config = {
        "dataset": dataset,
        "protocol": protocol,
        "subset": subset,
        "method": method,
        "method_description": m.description,
        "input_size": prep.size,
        "preprocess": asdict(prep),
        "autoencoder_saw_test_images": bool(
            m.unsupervised and (protocol not in ("official", "transfer") or ae_on_test)
        ),
        **({"target": target} if target is not None else {}),
        "preset": cfg.to_dict(),
        "command": " ".join(sys.argv),
    }
    if resume and (out / "config.json").exists():
        check_same_run(out, config)
    if main:
        write_run_description(out, config, cells, cfg, device)

    # the unsupervised stage (the autoencoder), without labels
    t0 = time.perf_counter()
    if m.unsupervised and main:
        (out / "checkpoints").mkdir(exist_ok=True)
    m.fit_features(
        images[ae_idx],
        checkpoint=str(out / "checkpoints" / f"{method}.pt") if m.unsupervised else None,
        resume=resume,
        verbose=verbose,
    )
    t_ae = time.perf_counter() - t0
    # features of every cell the protocol uses
    t0 = time.perf_counter()
    f_used = dd.map_rows(m.transform, images[used]) if m.unsupervised else m.transform(images[used])
    feats = np.zeros((len(cells), *f_used.shape[1:]), f_used.dtype)
    feats[used] = f_used
    t_feat = time.perf_counter() - t0
    if f_used.ndim == 2 and main:  # a feature vector per cell (not images, as for the CNN)
        write_features(out, f_used, [cells.cells[i] for i in used])
        say(f"features: {len(used)} x {f_used.shape[1]} in {t_feat:.1f}s")

    # the classifier under the protocol, then the final one on all labelled training cells
    t0 = time.perf_counter()
    adapted, stats = adapt_features(cfg.adapt, feats, cells, used)
    # each test specimen's call too, where the protocol holds whole specimens out and the cells name theirs
    specimens = cells.specimens if protocol in SPECIMEN_PROTOCOLS else None
    train_idx = cells.subsets["train"] if protocol == "official" else splits[0][1] if protocol == "transfer" else ae_idx
    test_idx = cells.subsets["test"] if split_k else None
    scoring = scoring_for(cells, np.concatenate([train_idx, *[a for _, a, _ in splits]]), splits, test_idx)
    per_split, pooled, full, rows, final = evaluate_classifier(
        m,
        feats,
        cells,
        splits,
        train_idx,
        test_idx,
        specimens,
        final_is_split=protocol in ("official", "transfer") and not split_k,
        say=say,
        scoring=scoring,
    )
    t_clf = time.perf_counter() - t0
    extra = ({"full": full} if full is not None else {}) | {
        "dataset": cells.name,
        "preset": cfg.name,
        "method": method,
        # the paper's figure is on SNPHEp-2: beside another dataset's it would compare nothing
        "paper_accuracy": m.paper_accuracy if cells.name.startswith("snphep2:") else None,
        "n_splits": len(splits),
        **({"adapt": adapted} if adapted else {}),
        **(scoring_extra(scoring, cells, splits) if scoring else {}),
        **({"per_source": pooled.pop("per_source")} if "per_source" in pooled else {}),
        "autoencoder_saw_test_images": config["autoencoder_saw_test_images"],
        # the held-out loss of the model kept (the best epoch), not of the last epoch
        "reconstruction_mse": min(h["val_loss"] for h in m.history_) if m.history_ else None,
        "seconds": {
            "autoencoder": round(t_ae, 1),
            "features": round(t_feat, 1),
            "classifier": round(t_clf, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
    }
    metrics = summarize_protocol(protocol, per_split, pooled, extra)
    history = {"autoencoder": m.history_, "classifier": getattr(final, "history_", [])}
    if stats:  # new cells are standardised as the (first) training source's were
        first = stats[cells.source_of[train_idx[0]]]
        final = StandardisedClassifier(final, first["mean"], first["std"])
    if not main:
        return metrics
    masks = prep.use_mask and any(c.mask for c in cells.cells)
    write_results(out, metrics, rows, cells, specimens is not None, m, final, history, masks, scoring)
    write_figures_and_report(out, m, images, ae_idx, metrics=metrics, config=config, cells=cells, history=history)
    metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    say(
        f"accuracy {metrics['accuracy']['mean']:.4f} ± {metrics['accuracy']['std']:.4f}, "
        f"MCA {metrics['mca']['mean']:.4f}{specimen_figure(metrics)} ({protocol}, preset {cfg.name}, {cells.name}); "
        f"{metrics['seconds']['total']:.0f}s"
    )
    say(f"report: {out / 'report.html'}")
    return metrics


def sampled_colour_problems(cells, n: int = 20) -> list[str]:
    """The problem of colour cells whose signal mixes two stains, judged from up to ``n`` cells spread over the
    dataset (read as the mean of R, G and B they would mix); none when they do not, or are grey."""
    from ..data.images import read_image
    from ..data.summary import colour_problem, colour_share, mixed

    sample = cells.cells[:: max(len(cells) // n, 1)][:n]
    shares = []
    for c in sample:
        try:
            share = colour_share(read_image(c.path, "rgb"))
        except Hep2Error:  # an unreadable file: named where the images are read
            continue
        if share is not None:
            shares.append(share)
    if shares and mixed(np.mean(shares, axis=0)):
        return [colour_problem(shares, f" among {len(sample)} cells sampled")]
    return []


def write_run_description(out: Path, config: dict, cells, cfg: Preset, device) -> None:
    """config.json (what was asked), environment.json (the machine and its precision) and data.json (the cells)."""
    write_json(out / "config.json", config)
    write_json(
        out / "environment.json",
        environment()
        | {
            "device": str(device),
            "processes": dd.world(),
            "bf16_native": bf16_is_native(device.type),
            "precision": precision(cfg, device),
        },
    )
    write_json(
        out / "data.json",
        {
            "dataset": cells.name,
            "fingerprint": cells.fingerprint(),
            "n_cells": len(cells),
            "classes": cells.classes,
            "subsets": {k: len(v) for k, v in cells.subsets.items()},
            "skipped": {"count": len(cells.skipped), "files": cells.skipped},
        },
    )


def write_features(out: Path, features: np.ndarray, cells: list) -> None:
    """features.npy (a row a cell, float32) and features_ids.csv (which cell each row is)."""
    buf = io.BytesIO()
    np.save(buf, features.astype(np.float32))
    atomic_write_bytes(out / "features.npy", buf.getvalue())
    write_csv(out / "features_ids.csv", ["row", "id", "label"], [[r, c.id, c.label] for r, c in enumerate(cells)])


def evaluate_classifier(
    m, feats, cells, splits, train_idx, test_idx, specimens, *, final_is_split: bool, say, scoring=None
):
    """A fresh classifier fitted and tested on each split, then the final one on ``train_idx`` (under official on a
    layout's own train/ -> test/, the one split's classifier is the final one) and, where ``test_idx`` is given,
    tested on all of it ("full"). Returns the per-split metrics, the pooled metrics, the full metrics (or None),
    the prediction rows and the final classifier. With a ``scoring`` (`hep2.pipeline.tree.Scoring`) the cells
    are scored at the depth it gives, and those it leaves out are not scored."""
    y, n_classes = cells.y, len(cells.classes)
    classes = scoring.classes if scoring else cells.classes

    def scored(idx, proba):
        """The cells scored, their labels and probabilities over ``classes``."""
        if not scoring:
            return idx, y[idx], proba
        p, yy, keep = scoring.apply(proba, cells.classes, [cells.classes[k] for k in y[idx]])
        return idx[keep], yy[keep], p[keep]

    def prediction_rows(split, idx, y_true, proba):
        return [
            [
                split,
                cells.cells[i].id,
                *([cells.cells[i].specimen] if specimens is not None else []),
                classes[t],
                classes[p],
                *np.round(pr, 5),
            ]
            for i, t, p, pr in zip(idx, y_true, proba.argmax(1), proba)
        ]

    def evaluate(idx, y_true, proba):
        return split_metrics(y_true, proba, classes, None if specimens is None else specimens[idx])

    def fit(a):
        return fit_classifier(m.classifier, feats[a], y[a], cells.classes)

    per_split, rows, all_idx, all_true, all_pred = {}, [], [], [], []
    for name, a, b in splits:
        clf = fit(a)
        idx, y_true, proba = scored(b, full_proba(clf, feats[b], n_classes))
        per_split[name] = evaluate(idx, y_true, proba)
        all_idx.append(idx)
        all_true.append(y_true)
        all_pred.append(proba.argmax(1))
        rows += prediction_rows(name, idx, y_true, proba)
        say(f"  {name}: {split_figures(per_split[name])}  (train {len(a)}, test {len(idx)})")
    all_true, all_pred = np.concatenate(all_true), np.concatenate(all_pred)
    pooled = classification_metrics(all_true, all_pred, classes)
    sources = cells.source_of[np.concatenate(all_idx)]
    if len(set(sources)) > 1:  # several datasets tested: each one's figures, over all splits
        pooled["per_source"] = {}
        for src in dict.fromkeys(sources):
            pick = sources == src
            m_src = classification_metrics(all_true[pick], all_pred[pick], classes)
            pooled["per_source"][src] = {"n": int(pick.sum()), "accuracy": m_src["accuracy"], "mca": m_src["mca"]}
            say(f"  {src}: accuracy {m_src['accuracy']:.4f}  MCA {m_src['mca']:.4f}  ({pick.sum()} cells, all splits)")
    final = clf if final_is_split else fit(train_idx)
    full = None
    if test_idx is not None:  # also all of train/ against all of test/
        idx, y_true, full_p = scored(test_idx, full_proba(final, feats[test_idx], n_classes))
        full = evaluate(idx, y_true, full_p)
        rows += prediction_rows("full", idx, y_true, full_p)
        say(f"  full (train/ -> test/): {split_figures(full)}")
    return per_split, pooled, full, rows, final


def adapt_features(adapt: str, feats: np.ndarray, cells, used) -> tuple[dict | None, dict | None]:
    """``adapt="standardize"``: each dataset's feature rows (of the cells used) standardised in place by the mean
    and std of its own cells, without labels, so that a lab's exposure, optics and stain shift no feature as a
    whole (under transfer the target's statistics come from its unlabelled cells). Returns what was done (or None)
    and each source's statistics. A saved model standardises new cells with the statistics of the training
    source (the first, where there are several): `hep2.pipeline.tree.StandardisedClassifier`."""
    if adapt == "none":
        return None, None
    if feats.ndim != 2:
        raise Hep2Error("adapt=standardize works on feature vectors; this method classifies images: drop it")
    sources = cells.source_of
    done = {}
    for src in dict.fromkeys(sources[used]):
        rows = used[sources[used] == src]
        mean, std = StandardisedClassifier.statistics(feats[rows])
        feats[rows] = (feats[rows] - mean) / std
        done[src] = {"cells": int(len(rows)), "mean": mean, "std": std}
    return {"method": adapt, "per_source": {k: v["cells"] for k, v in done.items()}}, done


def open_transfer(dataset, target, skip_bad: bool):
    """The source datasets and the target as one set whose subsets ``transfer:source`` / ``transfer:target``
    say which is which."""
    from ..data.readers import combine

    if target is None:
        raise Hep2Error("--protocol transfer needs --target DATASET: the cells (another lab's) to test on")
    sources = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    targets = [target] if isinstance(target, (str, Path)) else list(target)
    same = [t for t in targets if t in sources]
    if same:
        raise Hep2Error(f"{same[0]} is both a source and the target of --protocol transfer: test on another dataset")
    sets = [open_dataset(s, skip_bad=skip_bad) for s in sources + targets]
    cells = combine(sets)
    n_source = sum(len(s) for s in sets[: len(sources)])
    cells.subsets["transfer:source"] = np.arange(n_source)
    cells.subsets["transfer:target"] = np.arange(n_source, len(cells))
    cells.subsets.pop("test", None)  # the sources' own test sets are training cells here
    cells.subsets["train"] = cells.subsets["transfer:source"]
    return cells


def scoring_for(cells, train_idx, splits, test_idx):
    """The `Scoring` of a run whose labels nest or whose test labels differ from its training labels (transfer),
    else None (every cell scored over the dataset's classes)."""
    from ..data.patterns import leaf_sets
    from .tree import Scoring

    y = cells.y
    tested = np.concatenate([b for _, _, b in splits] + ([test_idx] if test_idx is not None else []))
    learnt = leaf_sets([cells.classes[k] for k in np.unique(y[train_idx]) if k >= 0])[0]
    labels = [cells.classes[k] for k in np.unique(y[tested]) if k >= 0]
    scoring = Scoring.between(learnt, labels)
    return None if scoring.is_identity(cells.classes) else scoring


def scoring_extra(scoring, cells, splits) -> dict:
    """metrics.json's account of the scoring: the depth, the folds and the cells left out."""
    left = {}
    for _, _, b in splits:
        for k in cells.y[b]:
            if k >= 0 and scoring.label_fold.get(cells.classes[k]) is None:
                left[cells.classes[k]] = left.get(cells.classes[k], 0) + 1
    return {
        "scoring": {
            "classes": scoring.classes,
            "shared": scoring.shared,
            "folded": scoring.notes,
            "left_out": left,
            "description": scoring.description(left),
        }
    }


def write_results(
    out: Path, metrics, rows, cells, with_specimens: bool, m, final, history, masks: bool, scoring=None
) -> None:
    """metrics.json, predictions.csv (a row a test cell of each split), the model (model/pipeline.pt) and
    history.json (the training curves)."""
    write_json(out / "metrics.json", metrics)
    write_csv(
        out / "predictions.csv",
        ["split", "id", *(["specimen"] if with_specimens else []), "true", "predicted"]
        + [f"p_{c}" for c in (scoring.classes if scoring else cells.classes)],
        rows,
    )
    naming = SNPHEP2_NAMING if any(s.startswith("snphep2:") for s in cells.sources) else None
    save_model(out / "model", m, final, cells.classes, masks=masks, naming=naming)
    write_json(out / "history.json", history)


def write_figures_and_report(out: Path, m, images, ae_idx, **report) -> None:
    """report.md / report.html with the confusion, the training curves and up to 8 reconstructions of the
    autoencoder's cells (with several views, the first autoencoder's, the one reconstructed)."""
    from .report import write_report

    recon_idx = ae_idx[np.linspace(0, len(ae_idx) - 1, min(8, len(ae_idx))).astype(int)]
    originals = images[recon_idx]
    write_report(
        out,
        **report,
        originals=(originals[:, 0] if originals.ndim == 4 else originals) / 255.0,
        reconstructions=m.reconstruct(images[recon_idx]),
    )


__all__ = [
    "evaluate_classifier",
    "run",
    "sampled_colour_problems",
    "write_features",
    "write_figures_and_report",
    "write_results",
    "write_run_description",
]
