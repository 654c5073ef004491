"""The ablation table of issue 6, built from run folders (never typed by hand).

    python benchmarks/ablation.py --out benchmarks/results/ablation.md \
        "paper-faithful (cpu, 1 AE)=runs/a-official,runs/a-cv" "+ levers=runs/b-official,runs/b-cv" ...

Each row names an `official` run folder and a `cv` run folder (either may be left empty: "label=runs/x,").
The table gives, per protocol, accuracy mean ± std and MCA from the run's metrics.json, the preset and
the differences of its settings from the row above, and each run's wall time (seconds.total; a run that
resumed its autoencoders from checkpoints says so, with the first autoencoder's training time from
history.json). Speed settings (amp, channels_last, ...) are left out of the differences.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hep2.presets import Preset

# names and speed settings: they do not change what is computed (beyond rounding)
SKIP = {
    "name",
    "description",
    "device",
    "threads",
    "amp",
    "channels_last",
    "infer_amp",
    "infer_channels_last",
    "fused_adam",
    "checkpoint_minutes",
    "deterministic",
}


def load(run: str) -> dict | None:
    if not run:
        return None
    p = Path(run)
    try:
        m = json.loads((p / "metrics.json").read_text())
        c = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"ablation: {p}: not a finished run folder ({e}); run `hep2 run ... --out {p}` first")
    hist = p / "history.json"
    ae_s = None
    if hist.exists():
        h = json.loads(hist.read_text())
        epochs = h.get("autoencoder", h) if isinstance(h, dict) else h
        if isinstance(epochs, list):
            ae_s = sum(e.get("seconds", 0) for e in epochs if isinstance(e, dict))
    return {"m": m, "c": c, "ae_s": ae_s}


def cell(r: dict | None) -> tuple[str, str, str]:
    if r is None:
        return "–", "–", "–"
    m = r["m"]
    acc = f"{m['accuracy']['mean']:.4f} ± {m['accuracy']['std']:.4f}"
    mca = f"{m['mca']['mean']:.4f}"
    wall = f"{m['seconds']['total'] / 60:.1f} min"
    if r["ae_s"] and m["seconds"].get("autoencoder", 0) < 0.5 * r["ae_s"]:
        n = r["c"]["preset"].get("ae_ensemble") or 1
        wall += (
            f" + the autoencoder's {r['ae_s'] / 60:.1f} min (resumed from checkpoints)"
            if n == 1
            else f" + {n} autoencoders (resumed from checkpoints; the first took {r['ae_s'] / 60:.1f} min)"
        )
    return acc, mca, wall


def diff(prev: dict | None, cur: dict) -> str:
    if prev is None:
        return "–"
    # a setting an older run did not have yet: its default is what that run did
    defaults = Preset().to_dict()
    a, b = defaults | prev, defaults | cur
    keys = sorted(k for k in b if k not in SKIP and a.get(k) != b[k])
    return ", ".join(f"{k}={b[k]}" for k in keys) or "same settings"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", help='"LABEL=OFFICIAL_RUN,CV_RUN"')
    ap.add_argument("--out", help="write the markdown table here (default: print it)")
    a = ap.parse_args(argv)
    lines = [
        "| configuration | method / preset | settings changed from the row above | official (Split-50-1..5) "
        "| official MCA | cv on train/ | cv MCA | wall: official | wall: cv |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    prev = None
    for row in a.rows:
        if "=" not in row or "," not in row.split("=", 1)[1]:
            sys.exit(f'ablation: {row!r}: write "LABEL=OFFICIAL_RUN,CV_RUN"')
        label, runs = row.split("=", 1)
        off, cv = (load(x.strip()) for x in runs.split(",", 1))
        ref = off or cv
        if ref is None:
            sys.exit(f"ablation: {label!r}: give at least one run folder")
        for r, want in ((off, "official"), (cv, "cv")):
            if r and r["m"]["protocol"] != want:
                sys.exit(f"ablation: {label!r}: expected the {want} run there, got a {r['m']['protocol']} run")
        preset = ref["c"]["preset"]
        (oa, om, ow), (ca, cm, cw) = cell(off), cell(cv)
        lines.append(
            f"| {label} | {ref['c']['method']} / {preset['name']} | {diff(prev, preset)} | {oa} | {om} "
            f"| {ca} | {cm} | {ow} | {cw} |"
        )
        prev = preset
    text = "\n".join(lines) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
