"""Choose classifiers and feature readings on SNPHEp-2 train/ only (issue 6's rule: no test image or
label takes part in a choice).

    python benchmarks/inner_validation.py RUN [--heads mlp linear logreg ...] [--groups N] [--blocks N]
        [--intensity DATA]

RUN is a run folder with ``features.npy`` + ``features_ids.csv`` (any protocol: only its ``train/``
rows are read). Two inner validations on those rows, same folds for every head:

- **blocked**: SNPHEp-2 ships no specimen IDs, but within each class the train/ IDs run through the
  positive-intensity cells and then the intermediate ones (the ``_hi`` / ``_lo`` split files), i.e.
  cells are stored specimen by specimen. Cutting each class's ID range into 4 contiguous blocks and
  holding one block of every class out gives folds that approximate specimen-disjoint ones. Its
  figures track the official protocol far better than cell-level cv does (see docs/record.md).
- **cell-cv**: stratified 5-fold at cell level (the paper's reading; optimistic); the folds of
  ``hep2 run --protocol cv`` (seed 0).
- **positive <-> intermediate** (with ``--intensity DATA``, the SNPHEp-2 folder): train on the train/
  cells the ``Split-50-K_train_hi`` files list as positive-intensity, test on the intermediate ones
  (``_lo``), and back; the mean of the two. The two halves share no specimen: the hardest probe.

``--blocks 5`` gives the folds of ``hep2 run --protocol blocked`` (cv_folds = 5).

± is the standard deviation over the folds (ddof 0, as numpy's default).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
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

from hep2.data import open_dataset
from hep2.errors import Hep2Error
from hep2.estimators import MLPHead
from hep2.pipeline.evaluation import blocked_folds


def heads(groups: int, views: int = 1) -> dict:
    def linear(wd):
        return lambda: MLPHead(
            hidden=(), dropout=0.0, weight_decay=wd, ensemble=2, groups=groups, views=views, device="cpu"
        )

    def mlp(**kw):
        return lambda: MLPHead(groups=groups, views=views, device="cpu", **{"ensemble": 2} | kw)

    return {
        "mlp": mlp(),  # the paper's 250-50, x2
        "mlp5": mlp(ensemble=5),  # five of them
        "mlp-1024": mlp(hidden=(1024, 256)),
        "mlp-drop0.7": mlp(dropout=0.7),
        "linear": linear(0.1),  # preset improved's
        **{f"linear-wd{wd}": linear(wd) for wd in (0.01, 0.3, 1.0)},
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
        "logreg-C0.1": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)),
        "svm": lambda: make_pipeline(StandardScaler(), SVC(C=10, gamma="scale")),
        "svm-C1": lambda: make_pipeline(StandardScaler(), SVC(C=1, gamma="scale")),
    }


def score(make, folds, X, y) -> tuple[float, float, float]:
    acc, mca = [], []
    for tr, te in folds:
        p = make().fit(X[tr], y[tr]).predict(X[te])
        acc.append(float((p == y[te]).mean()))
        mca.append(balanced_accuracy_score(y[te], p))
    return float(np.mean(acc)), float(np.std(acc)), float(np.mean(mca))


def intensity_levels(data: Path, ids) -> np.ndarray:
    """Each row's intensity ("positive", "intermediate" or None) as hep2's SNPHEp-2 reader gives it (the
    Split-50-K _hi / _lo files), for the rows whose cell IDs are ``ids``."""
    try:
        level = {c.id: c.intensity for c in open_dataset(f"snphep2:{data}").cells}
    except Hep2Error as e:
        sys.exit(f"inner_validation: --intensity {data}: {e}")
    return np.array([level.get(i) for i in ids], dtype=object)


def intensity_folds(data: Path, ids) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positive -> intermediate) and (intermediate -> positive) over the rows whose cell IDs are ``ids``."""
    level = intensity_levels(data, ids)
    hi, lo = np.flatnonzero(level == "positive"), np.flatnonzero(level == "intermediate")
    return [(hi, lo), (lo, hi)]


def crossed_folds(data: Path, ids, y) -> list[tuple[np.ndarray, np.ndarray]]:
    """For every pair S of classes: train on S's positive cells and the other classes' intermediate ones, test
    on the rest, and back (20 folds with 5 classes): the link between class and brightness flips between the
    two sides, as it does for some classes between SNPHEp-2's train/ and test/."""
    level = intensity_levels(data, ids)
    folds = []
    for S in itertools.combinations(sorted(set(y)), 2):
        s = np.isin(y, S)
        a = np.flatnonzero((s & (level == "positive")) | (~s & (level == "intermediate")))
        b = np.flatnonzero((s & (level == "intermediate")) | (~s & (level == "positive")))
        folds += [(a, b), (b, a)]
    return folds


def paired_folds(data: Path, ids, y, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fold k holds out the k-th of ``n`` contiguous ID parts of every class's positive cells and of its
    intermediate cells, so that, as in the official splits' training sets, every class keeps both levels."""
    level = intensity_levels(data, ids)
    num = np.array([int(str(i).split("/")[-1]) for i in ids])
    part = np.full(len(y), -1)
    for c in set(y):
        for lv in ("positive", "intermediate"):
            idx = np.flatnonzero((y == c) & (level == lv))
            for k, chunk in enumerate(np.array_split(idx[np.argsort(num[idx])], n)):
                part[chunk] = k
    return [(np.flatnonzero((part >= 0) & (part != k)), np.flatnonzero(part == k)) for k in range(n)]


def member_runs(runs, prog: str):
    """[(method, train/ features)] of finished `hep2 run` folders on the same cells, with the train/ labels
    and IDs: what the ensemble probes read."""
    from hep2.training import load_checkpoint

    members, ids = [], None
    for run in map(Path, runs):
        try:
            method = load_checkpoint(run / "model" / "pipeline.pt")["features"]
            F = np.load(run / "features.npy")
            rows = list(csv.DictReader(open(run / "features_ids.csv", newline="")))
        except (OSError, KeyError, Hep2Error) as e:
            sys.exit(f"{prog}: {run}: not a finished `hep2 run` folder with features ({e})")
        if ids is not None and [r["id"] for r in rows] != ids:
            sys.exit(f"{prog}: {run}: its cells differ from {runs[0]}'s; give runs on the same data")
        ids = [r["id"] for r in rows]
        train = np.array([i.startswith("train/") for i in ids])
        members.append((method, F[train]))
    return members, np.array([r["label"] for r in rows])[train], np.array(ids)[train]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--heads", nargs="+", default=["mlp", "linear", "logreg"])
    ap.add_argument("--groups", type=int, default=1, help="feature blocks (autoencoders) for the MLPHead heads")
    ap.add_argument("--blocks", type=int, default=4, help="blocks per class (5: hep2's blocked protocol)")
    ap.add_argument("--intensity", metavar="DATA", help="SNPHEp-2 folder: add the positive <-> intermediate probe")
    a = ap.parse_args(argv)
    run = Path(a.run)
    try:
        F = np.load(run / "features.npy")
        rows = list(csv.DictReader(open(run / "features_ids.csv", newline="")))
    except OSError as e:
        sys.exit(f"inner_validation: {run}: no features ({e}); use a run folder of `hep2 run`")
    try:  # a dcae-mlp run with tta_samples holds each cell's 8 views' features side by side
        config = json.load(open(run / "config.json"))
        views = 8 if config["preset"].get("tta_samples") and config.get("method", "dcae-mlp") == "dcae-mlp" else 1
    except (OSError, ValueError, KeyError):
        views = 1
    table = heads(a.groups, views)
    if views > 1 and any(not h.startswith(("mlp", "linear")) for h in a.heads):
        sys.exit(
            f"inner_validation: {run} holds 8 views per cell (tta_samples): only the mlp* / linear* heads "
            "take them apart; choose among those"
        )
    unknown = [h for h in a.heads if h not in table]
    if unknown:
        sys.exit(f"inner_validation: unknown head(s) {', '.join(unknown)}: choose from {', '.join(table)}")
    train = np.array([r["id"].startswith("train/") for r in rows])
    if train.sum() < 50:
        sys.exit(f"inner_validation: {run}: fewer than 50 train/ cells; this is for SNPHEp-2 runs")
    X = F[train].astype(np.float32)
    y = np.array([r["label"] for r in rows])[train]
    ids = np.array([int(r["id"].split("/")[1]) for r in rows])[train]
    blocked = blocked_folds(y, ids, a.blocks)
    cell = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    probes = {"blocked": blocked, "cell-cv": cell}
    if a.intensity:
        probes["pos<->int"] = intensity_folds(Path(a.intensity), np.array([r["id"] for r in rows])[train])
    print(f"{run}: {len(X)} train/ cells x {X.shape[1]} features")
    for name in a.heads:
        t = time.perf_counter()
        parts = []
        for probe, folds in probes.items():
            m, sd, mca = score(table[name], folds, X, y)
            parts.append(f"{probe} {m:.4f} ± {sd:.4f} MCA {mca:.4f}")
        print(f"{name:14s} " + " | ".join(parts) + f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
