"""`hep2 compare`: several methods on identical splits, side by side with the paper's Table II."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import distributed as dd
from ..data import open_dataset
from ..data.images import atomic_write_bytes
from ..errors import Hep2Error
from ..presets import Preset, check_preset
from .evaluation import check_protocol
from .methods import METHODS
from .runfolder import check_same_run, prepare_out, run_subset, write_json
from .runner import run


def compare(
    dataset: str,
    *,
    protocol: str,
    methods,
    cfg: Preset,
    out,
    subset: str = "train",
    resume: bool = False,
    skip_bad: bool = False,
    verbose: bool = True,
    ensemble: bool = False,
    neighbours: int = 0,
) -> dict:
    """Run each method into ``out/<method>/`` (a finished one is reused with ``resume``), with
    ``ensemble`` also their equal-weight average into ``out/ensemble/`` (`hep2 ensemble`), then write
    comparison.json, comparison.md and comparison.png."""
    check_methods(methods, ensemble, neighbours)  # before any method trains or a folder is made
    check_preset(cfg)
    check_protocol(protocol)
    out = Path(out)
    prepare_out(out, resume, kind="compare")
    rows = []
    cells = None
    for name in methods:
        sub = out / name
        if resume and (sub / "metrics.json").exists():
            # a finished method is reused only if it was made with these data, subset and settings
            cells = cells or open_dataset(dataset, skip_bad=skip_bad)
            check_same_run(
                sub,
                {
                    "dataset": dataset,
                    "protocol": protocol,
                    "method": name,
                    "preset": cfg.to_dict(),
                    "subset": run_subset(cells, protocol, subset),
                },
            )
            metrics = json.loads((sub / "metrics.json").read_text())
        else:
            metrics = run(
                dataset,
                protocol=protocol,
                cfg=cfg,
                out=sub,
                subset=subset,
                resume=resume,
                skip_bad=skip_bad,
                verbose=verbose,
                method=name,
            )
        paper = metrics.get("paper_accuracy") if str(metrics.get("dataset")).startswith("snphep2:") else None
        rows.append(comparison_row(name, METHODS[name].description, paper, metrics, metrics["seconds"]["total"]))
    if ensemble:
        from .ensemble import make_ensemble

        sub, members = out / "ensemble", [str(out / name) for name in methods]
        done = json.loads((sub / "metrics.json").read_text()) if (sub / "metrics.json").exists() else {}
        if (
            resume
            and [m["run"] for m in done.get("members", [])] == members
            and done.get("neighbours") == (neighbours or None)
        ):
            metrics = done
        else:
            if resume and sub.exists() and dd.is_main():
                shutil.rmtree(sub)  # cut short, or of other methods: rebuilt in seconds
            metrics = make_ensemble(members, sub, verbose=verbose, neighbours=neighbours)
        what = "the methods above, probabilities averaged (equal weights)" + (
            f", then each test cell smoothed over its {neighbours} nearest test cells (transductive)"
            if neighbours
            else ""
        )
        rows.append(
            comparison_row(
                "ensemble", what, None, metrics, sum(r["seconds"] for r in rows) + metrics["seconds"]["total"]
            )
        )
    result = {
        "protocol": protocol,
        "protocol_description": metrics["protocol_description"],
        "dataset": rows[0]["dataset"],
        "preset": cfg.name,
        "rows": rows,
    }
    if dd.is_main():  # under torchrun: rank 0 writes
        write_comparison(out, result)
    return result


def write_comparison(out: Path, result: dict) -> None:
    """comparison.json, comparison.md (the table) and comparison.png (the bars) of a comparison's rows."""
    write_json(out / "comparison.json", result)
    atomic_write_bytes(out / "comparison.md", comparison_markdown(result).encode())
    comparison_figure(result, out / "comparison.png")


def check_methods(methods, ensemble: bool, neighbours: int) -> None:
    """What `compare` is asked to run, checked before it runs anything."""
    if isinstance(methods, str) or not methods:
        raise Hep2Error(f"methods={methods!r}: give a list of method names, e.g. ['dcae-mlp', 'bow']")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise Hep2Error(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise Hep2Error(f"--methods names {', '.join(twice)} more than once: name each method once")
    if ensemble and len(methods) < 2:
        raise Hep2Error("--ensemble averages several methods: name at least two with --methods")
    if neighbours:
        from .methods import Method
        from .neighbours import BatchNeighbours

        if not ensemble:
            raise Hep2Error("--neighbours smooths the ensemble's predictions: add --ensemble")
        BatchNeighbours(neighbours)
        if all(METHODS[m].transform is Method.transform for m in methods):
            raise Hep2Error(
                f"--neighbours measures nearness in the methods' features, and {', '.join(methods)} keep "
                "none (they classify the images themselves): add a method such as dcae-mlp or bow"
            )


def comparison_row(method: str, description: str, paper_accuracy, metrics: dict, seconds: float) -> dict:
    """One row of comparison.json from a run's metrics.json."""
    return {
        "method": method,
        "description": description,
        "accuracy": {k: metrics["accuracy"][k] for k in ("mean", "std")},
        "mca": {k: metrics["mca"][k] for k in ("mean", "std")},
        "paper_accuracy": paper_accuracy,
        "seconds": seconds,
        "dataset": metrics["dataset"],
        **({"specimens": metrics["specimens"]["accuracy"]["mean"]} if "specimens" in metrics else {}),
    }


def comparison_markdown(result: dict) -> str:
    lines = [
        f"# Comparison on `{result['dataset']}`",
        "",
        f"Protocol `{result['protocol']}`: {result['protocol_description']}. Preset `{result['preset']}`.",
        "",
    ]
    sp = any("specimens" in r for r in result["rows"])  # the specimen-level call, where the data has one
    lines += [
        "| method | accuracy (mean ± std) | mean class accuracy | "
        + ("specimens right | " if sp else "")
        + "paper (Table II) | time |",
        "|---|---|---|" + ("---|" if sp else "") + "---|---|",
    ]
    for r in result["rows"]:
        paper = f"{r['paper_accuracy']:.4f}" if r["paper_accuracy"] is not None else "–"
        spec = (f"{r['specimens']:.4f} | " if "specimens" in r else "– | ") if sp else ""
        lines.append(
            f"| {r['method']} | {r['accuracy']['mean']:.4f} ± {r['accuracy']['std']:.4f} | "
            f"{r['mca']['mean']:.4f} ± {r['mca']['std']:.4f} | {spec}{paper} | {r['seconds']:.0f} s |"
        )
    if any(r["paper_accuracy"] is not None for r in result["rows"]):  # SNPHEp-2: the paper's data
        lines += [
            "",
            "The paper's figures appear to come from cell-level cross-validation (`cv`); under the official "
            "specimen-disjoint split every method scores far lower.",
        ]
    lines += ["", "![comparison](comparison.png)", ""]
    return "\n".join(lines)


def comparison_figure(result: dict, path: Path) -> None:
    from .report import plt, save_figure

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.8))
    x = range(len(rows))
    paper = any(r["paper_accuracy"] is not None for r in rows)  # SNPHEp-2 only
    ax.bar(
        [i - 0.2 * paper for i in x],
        [r["accuracy"]["mean"] for r in rows],
        0.4,
        yerr=[r["accuracy"]["std"] for r in rows],
        label=f"ours ({result['protocol']})",
    )
    if paper:
        ax.bar([i + 0.2 for i in x], [r["paper_accuracy"] or 0 for r in rows], 0.4, label="paper (Table II)")
    ax.set_xticks(list(x), [r["method"] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title(f"{result['dataset']} | protocol {result['protocol']} | preset {result['preset']}", fontsize=9)
    save_figure(fig, path)


__all__ = ["check_methods", "compare", "comparison_figure", "comparison_markdown", "comparison_row", "write_comparison"]
