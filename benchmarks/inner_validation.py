"""Choose classifiers and feature readings on SNPHEp-2 train/ only (issue 6's rule: no test image or
label takes part in a choice).

    python benchmarks/inner_validation.py RUN [--heads mlp linear logreg ...] [--groups N]

RUN is a run folder with ``features.npy`` + ``features_ids.csv`` (any protocol: only its ``train/``
rows are read). Two inner validations on those rows, same folds for every head:

- **blocked**: SNPHEp-2 ships no specimen IDs, but within each class the train/ IDs run through the
  positive-intensity cells and then the intermediate ones (the ``_hi`` / ``_lo`` split files), i.e.
  cells are stored specimen by specimen. Cutting each class's ID range into 4 contiguous blocks and
  holding one block of every class out gives folds that approximate specimen-disjoint ones. Its
  figures track the official protocol far better than cell-level cv does (see the README).
- **cell-cv**: stratified 5-fold at cell level (the paper's reading; optimistic).

± is the standard deviation over the folds (ddof 0, as numpy's default).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from hep2.estimators import MLPHead
from hep2.evaluation import blocked_folds


def heads(groups: int) -> dict:
    def linear(wd):
        return lambda: MLPHead(hidden=(), dropout=0.0, weight_decay=wd, ensemble=2, groups=groups, device="cpu")

    return {
        "mlp": lambda: MLPHead(ensemble=2, groups=groups, device="cpu"),       # the paper's 250-50, x2
        "linear": linear(0.1),                                                 # preset improved's
        **{f"linear-wd{wd}": linear(wd) for wd in (0.01, 0.3, 1.0)},
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
        "svm": lambda: make_pipeline(StandardScaler(), SVC(C=10, gamma="scale")),
    }


def score(make, folds, X, y) -> tuple[float, float, float]:
    acc, mca = [], []
    for tr, te in folds:
        p = make().fit(X[tr], y[tr]).predict(X[te])
        acc.append(float((p == y[te]).mean()))
        mca.append(balanced_accuracy_score(y[te], p))
    return float(np.mean(acc)), float(np.std(acc)), float(np.mean(mca))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--heads", nargs="+", default=["mlp", "linear", "logreg"])
    ap.add_argument("--groups", type=int, default=1, help="feature blocks (autoencoders) for the MLPHead heads")
    a = ap.parse_args(argv)
    run = Path(a.run)
    try:
        F = np.load(run / "features.npy")
        rows = list(csv.DictReader(open(run / "features_ids.csv", newline="")))
    except OSError as e:
        sys.exit(f"inner_validation: {run}: no features ({e}); use a run folder of `hep2 run`")
    table = heads(a.groups)
    unknown = [h for h in a.heads if h not in table]
    if unknown:
        sys.exit(f"inner_validation: unknown head(s) {', '.join(unknown)}: choose from {', '.join(table)}")
    train = np.array([r["id"].startswith("train/") for r in rows])
    if train.sum() < 50:
        sys.exit(f"inner_validation: {run}: fewer than 50 train/ cells; this is for SNPHEp-2 runs")
    X = F[train].astype(np.float32)
    y = np.array([r["label"] for r in rows])[train]
    ids = np.array([int(r["id"].split("/")[1]) for r in rows])[train]
    blocked = blocked_folds(y, ids, 4)
    cell = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    print(f"{run}: {len(X)} train/ cells x {X.shape[1]} features")
    for name in a.heads:
        t = time.perf_counter()
        b, c = score(table[name], blocked, X, y), score(table[name], cell, X, y)
        print(f"{name:14s} blocked {b[0]:.4f} ± {b[1]:.4f} MCA {b[2]:.4f} | cell-cv {c[0]:.4f} ± {c[1]:.4f} "
              f"MCA {c[2]:.4f}  ({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
