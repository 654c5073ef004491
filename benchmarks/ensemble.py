"""Average the class probabilities of several finished runs on identical splits (a late-fusion
ensemble of methods), and score the average split by split.

    python benchmarks/ensemble.py runs/a-official runs/b-official ... [--out FILE.md]

Every run must be a `hep2 run` / `hep2 compare` method folder with `predictions.csv` (one row per
test cell of each split, `p_CLASS` columns) from the same protocol, dataset and splits. Weights
are equal; std over splits with ddof=1, as in metrics.json: nothing is fitted here, so nothing is chosen on the test cells. Which runs to combine is
the caller's choice; make it before looking at the result (issue 6's rule).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from hep2.evaluation import classification_metrics


def read(run: Path) -> tuple[dict, list[str], str]:
    try:
        with open(run / "predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        protocol = json.loads((run / "metrics.json").read_text())["protocol"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"ensemble: {run}: not a finished run folder ({e})")
    classes = [k[2:] for k in rows[0] if k.startswith("p_")] if rows else []
    if not classes:
        sys.exit(f"ensemble: {run}/predictions.csv has no rows or no p_CLASS columns")
    try:
        table = {(r["split"], r["id"]): (r["true"], np.array([float(r["p_" + c]) for c in classes])) for r in rows}
    except (KeyError, ValueError, TypeError) as e:
        sys.exit(f"ensemble: {run}/predictions.csv: a row without split / id / true or a bad probability ({e})")
    return table, classes, protocol


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="also write the result as markdown here")
    a = ap.parse_args(argv)
    if len(a.runs) < 2:
        sys.exit("ensemble: give at least two run folders")
    tables = [read(r) for r in a.runs]
    base, classes, protocol = tables[0]
    for run, (t, c, p) in zip(a.runs[1:], tables[1:]):
        if c != classes or p != protocol:
            sys.exit(f"ensemble: {run}: classes {c} / protocol {p} differ from {a.runs[0]}'s {classes} / {protocol}")
        if t.keys() != base.keys():
            sys.exit(f"ensemble: {run}: its splits or test cells differ from {a.runs[0]}'s: runs must share splits")
    per_split: dict[str, list] = {}
    for key, (true, _) in base.items():
        p = sum(t[key][1] for t, _, _ in tables) / len(tables)
        if true not in classes:
            sys.exit(f"ensemble: {a.runs[0]}: cell {key[1]} has true class {true!r}, not one of {classes}")
        per_split.setdefault(key[0], []).append((classes.index(true), int(p.argmax())))
    lines = [f"Equal-weight average of {len(a.runs)} runs' probabilities ({protocol}): "
             + ", ".join(str(r) for r in a.runs), "", "| split | accuracy | MCA |", "|---|---|---|"]
    acc, mca = [], []
    for split, pairs in sorted(per_split.items()):
        y, yhat = np.array(pairs).T
        m = classification_metrics(y, yhat, classes)
        acc.append(m["accuracy"])
        mca.append(m["mca"])
        lines.append(f"| {split} | {m['accuracy']:.4f} | {m['mca']:.4f} |")
    sd = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)     # as in metrics.json
    lines.append(f"| mean ± std | {np.mean(acc):.4f} ± {sd(acc):.4f} | {np.mean(mca):.4f} ± {sd(mca):.4f} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
