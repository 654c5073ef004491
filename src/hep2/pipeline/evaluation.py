"""Evaluation protocols (official, cv, grouped) and their metrics.

- ``official``: SNPHEp-2's specimen-disjoint Split-50-K (train on K/train, test on K/test), K = 1..5,
  plus ``full`` (all of train/ against all of test/).
- ``cv``: stratified k-fold at cell level inside one subset: cells of one specimen fall on both
  sides of a fold, so it is optimistic (the paper's reading).
- ``grouped``: k-fold over specimens (StratifiedGroupKFold), for layouts that carry specimen IDs.
- ``transfer``: trained on one or several datasets, tested once on another (a lab's cells that no training
  cell comes from), at the depth of the pattern tree both share (`hep2.pipeline.tree.Scoring`).
- ``blocked``: for a subset without specimen IDs whose cells are stored specimen by specimen (SNPHEp-2's
  train/): each class's cells, in ID order, cut into k contiguous blocks; fold i holds out block i of
  every class. It approximates specimen-disjoint folds, for choosing settings on training data only.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..data.cellset import CellSet
from ..errors import Hep2Error

PROTOCOLS = ("official", "cv", "grouped", "blocked", "transfer")
TRANSFER = "source -> target"  # the one split of `transfer`

HOLDOUT = "train/ -> test/"  # the one split of `official` on a layout without Split-50-K: its own test set
PROTOCOL_TEXT = {
    "official": "official specimen-disjoint split (train on Split-50-K train, test on Split-50-K test, K = 1..5)",
    "holdout": "the dataset's own test set: trained on train/, tested once on test/ (specimen-disjoint where the "
    "lab kept each specimen on one side)",
    "cv": "cell-level stratified k-fold cross-validation (cells of one specimen on both sides: optimistic)",
    "grouped": "specimen-grouped k-fold cross-validation (no specimen on both sides)",
    "transfer": "across datasets: trained on the source datasets, tested once on another dataset (another lab's "
    "cells), at the depth of the pattern tree both share",
    "blocked": "k-fold over contiguous ID blocks of each class (cells stored specimen by specimen: close to "
    "specimen-disjoint)",
}


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise Hep2Error(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")


# The DCAE paper's Figure 2 (SNPHEp-2), percent; rows predicted, columns true class. The paper names labels 1..5
# homogeneous, coarse speckled, fine speckled, nucleolar, centromere; hep2 names labels 1 and 3 the other way round
# (hep2.data.readers.SNPHEP2_CLASSES), so the paper's first row and column (its "homogeneous", label 1) are
# fine_speckled here and its third (label 3) homogeneous, and the matrix is put in hep2's class order.
_PAPER_BY_LABEL = [
    [91.07, 0.53, 9.97, 0, 0],
    [0.46, 88.27, 0, 5.77, 6.54],
    [6.11, 2.24, 86.42, 0, 0.10],
    [1.38, 3.79, 0.94, 85.09, 0.17],
    [0.98, 5.17, 2.67, 9.14, 93.19],
]
_ORDER = [2, 1, 0, 3, 4]  # hep2's class order (homogeneous, coarse, fine, ...) as the paper's label positions
PAPER_CONFUSION = {
    "classes": ["homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere"],
    "matrix": [[_PAPER_BY_LABEL[i][j] for j in _ORDER] for i in _ORDER],
    "accuracy": 0.8808,
}


def protocol_splits(cells: CellSet, protocol: str, *, subset: str = "train", folds: int = 5, seed: int = 0):
    """The (name, train indices, test indices) of each evaluation split, indices into ``cells``,
    and the indices of the images the autoencoder may be trained on (never a test image of
    ``official``; for ``cv`` / ``grouped`` the whole evaluated subset)."""
    if protocol == "official":
        ks = cells.official_splits()
        if "train" not in cells.subsets or not ks and "test" not in cells.subsets:
            raise Hep2Error(
                f"protocol 'official' needs a dataset with a test set apart from its training set (train/ "
                f"and test/ folders, a manifest's split column, or SNPHEp-2's Split-50-K); {cells.name} "
                "has none: use --protocol grouped (or cv)"
            )
        if not ks:  # the layout's own train/ -> test/, once
            return [(HOLDOUT, cells.subsets["train"], cells.subsets["test"])], cells.subsets["train"]
        splits = [(k, cells.subsets[f"{k}/train"], cells.subsets[f"{k}/test"]) for k in ks]
        return splits, cells.subsets["train"]
    check_protocol(protocol)
    if protocol == "transfer":
        if "transfer:source" not in cells.subsets:
            raise Hep2Error("protocol 'transfer' needs a target dataset: give --target DATASET (another lab's cells)")
        train, test = cells.subsets["transfer:source"], cells.subsets["transfer:target"]
        train, test = train[cells.y[train] >= 0], test[cells.y[test] >= 0]
        if not len(test):
            raise Hep2Error("the target dataset of --protocol transfer has no labelled cells to score")
        return [(TRANSFER, train, test)], train
    if subset == "train" and "train" not in cells.subsets:
        subset = "all"  # the default, for a layout without a train split
    if subset == "all":
        pool = cells.subsets.get("all", np.arange(len(cells)))
    elif subset in cells.subsets:
        pool = cells.subsets[subset]
    else:
        names = [k for k in cells.subsets if k != "all"]
        raise Hep2Error(
            f"--subset {subset!r}: {cells.name} has "
            + (f"the subsets {', '.join(names)} and all" if names else "no named subsets: leave --subset out (all)")
        )
    pool = np.asarray(pool)
    pool = pool[cells.y[pool] >= 0]  # unlabelled cells cannot be scored
    y = cells.y[pool]
    if protocol == "blocked" and cells.specimens is not None:
        raise Hep2Error(
            f"{cells.name} has specimen IDs: use --protocol grouped, which holds out whole specimens "
            "(blocked only approximates that, for data without them)"
        )
    if protocol in ("cv", "blocked", "grouped"):  # every fold holds some cells of every class
        counts = np.bincount(y)
        smallest = counts[counts > 0].min()
        if smallest < folds:
            few = [f"{cells.classes[c]} ({n})" for c, n in enumerate(counts) if 0 < n < folds]
            raise Hep2Error(
                f"{protocol} with {folds} folds needs at least {folds} cells per class in {subset}; "
                f"{', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer: add cells, correct a "
                f"misspelt class name (it makes a class of its own), or lower cv_folds (at least 2)"
            )
    if protocol == "cv":
        kf = StratifiedKFold(folds, shuffle=True, random_state=seed).split(pool, y)
    elif protocol == "blocked":
        kf = blocked_folds(y, [cells.cells[i].id for i in pool], folds)
    else:
        groups = cells.specimens
        if groups is None:
            without = [c.id for c in cells.cells if c.specimen is None]
            has = (
                "has none"
                if len(without) == len(cells)
                else f"{len(without)} of its {len(cells)} cells have none (first: {', '.join(without[:3])})"
            )
            raise Hep2Error(
                f"protocol 'grouped' needs specimen IDs for every cell, and {cells.name} {has}: "
                + (
                    "add a specimens.csv (folder layout) or a specimen column (manifest)"
                    if has == "has none"
                    else "give them a specimen in specimens.csv or the manifest (`hep2 data summary` lists them)"
                )
                + ", or use --protocol cv"
            )
        groups = groups[pool]
        if len(set(groups)) < folds:
            raise Hep2Error(
                f"grouped cv with {folds} folds needs at least {folds} specimens; {cells.name} has "
                f"{len(set(groups))}: lower cv_folds (--set cv_folds=N)"
            )
        # Stratified and shuffled: plain GroupKFold can put every specimen of a class in one fold.
        kf = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(pool, y, groups)
    splits = [(f"fold-{i + 1}", pool[a], pool[b]) for i, (a, b) in enumerate(kf)]
    return splits, pool


def _natural(text: str) -> tuple:
    """'train/10' after 'train/9': digits compare as numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text)))


def blocks(y: np.ndarray, ids, n: int = 4) -> np.ndarray:
    """Block number of each cell: each class's cells sorted by ID (numbers in IDs compared as
    numbers), cut into ``n`` contiguous runs of near-equal size."""
    ids = np.asarray(ids, dtype=object)
    g = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        order = sorted(idx, key=lambda i: _natural(ids[i]))
        for b, part in enumerate(np.array_split(np.array(order, int), n)):
            g[part] = b
    return g


def blocked_folds(y: np.ndarray, ids, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) positions of each of the ``n`` folds: fold b holds out block b of every class."""
    g = blocks(y, ids, n)
    return [(np.flatnonzero(g != b), np.flatnonzero(g == b)) for b in range(n)]


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    """Accuracy, mean class accuracy (mean recall), per-class P/R/F1, the confusion matrix in the
    paper's form (rows predicted, columns true, percent of each true class) and in counts."""
    labels = np.arange(len(classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)  # rows true, columns predicted
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = cm.sum(1) > 0
    col = cm.T.astype(float)
    pct = np.divide(col * 100, cm.sum(1)[None, :], out=np.zeros_like(col), where=cm.sum(1)[None, :] > 0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mca": float(r[present].mean()),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion": {
            "classes": list(classes),
            "rows": "predicted",
            "columns": "true",
            "percent": np.round(pct, 2).tolist(),
            "counts": cm.T.tolist(),
        },
    }


# Protocols whose test specimens are unseen in training: there a specimen-level figure means what it says.
SPECIMEN_PROTOCOLS = ("official", "grouped")


def batch_summary(proba: np.ndarray, classes: list[str]) -> dict:
    """One batch of cells (a well, a specimen, an upload) from their class probabilities (N, C): the
    cells each class got, the dominant pattern (the most frequent call; a tie goes to the higher mean
    probability), the share of cells that agree with it and the mean probabilities."""
    proba = np.asarray(proba)
    counts = np.bincount(proba.argmax(1), minlength=len(classes))
    mean_p = proba.mean(0)
    top = max(range(len(classes)), key=lambda c: (counts[c], mean_p[c]))
    return {
        "n": len(proba),
        "dominant": classes[top],
        "agreement": float(counts[top] / len(proba)),
        "counts": {c: int(n) for c, n in zip(classes, counts)},
        "mean_probability": {c: float(v) for c, v in zip(classes, mean_p)},
    }


def specimen_metrics(y_true, proba, specimens, classes: list[str]) -> dict:
    """Specimen-level figures, the call a lab reports: each test specimen's dominant pattern
    (`batch_summary` of its cells) against its label (its cells' most frequent true class)."""
    y_true, groups = np.asarray(y_true), {}
    for i, s in enumerate(specimens):
        groups.setdefault(s, []).append(i)
    true, pred = [], []
    for idx in groups.values():
        true.append(int(np.bincount(y_true[idx], minlength=len(classes)).argmax()))
        pred.append(classes.index(batch_summary(proba[idx], classes)["dominant"]))
    true, pred = np.array(true), np.array(pred)
    return {
        "accuracy": float((true == pred).mean()),
        "n": len(groups),
        "wrong": [
            {"specimen": str(s), "true": classes[t], "predicted": classes[p]}
            for s, t, p in zip(groups, true, pred)
            if t != p
        ],
    }


def split_metrics(y_true, proba, classes: list[str], specimens=None) -> dict:
    """`classification_metrics` of the calls (the highest probability), and with ``specimens`` (each
    cell's specimen ID) the `specimen_metrics` too, under ``specimens``."""
    out = classification_metrics(y_true, np.asarray(proba).argmax(1), classes)
    if specimens is not None:
        out["specimens"] = specimen_metrics(y_true, proba, specimens, classes)
    return out


def split_figures(m: dict) -> str:
    """'accuracy 0.9000  MCA 0.8900  specimens 1.0000 of 4': one split's line of progress."""
    return f"accuracy {m['accuracy']:.4f}  MCA {m['mca']:.4f}" + (
        f"  specimens {m['specimens']['accuracy']:.4f} of {m['specimens']['n']}" if "specimens" in m else ""
    )


def specimen_figure(metrics: dict) -> str:
    """', specimens 0.9000 ± 0.1000' for a summary line, where metrics.json has a specimen-level figure."""
    sp = metrics.get("specimens")
    return f", specimens {sp['accuracy']['mean']:.4f} ± {sp['accuracy']['std']:.4f}" if sp else ""


def summarize_protocol(protocol: str, per_split: dict[str, dict], pooled: dict, extra: dict | None = None) -> dict:
    """metrics.json: mean and spread over splits, per-split figures, pooled per-class and confusion;
    the specimen-level accuracy where every split has one (`specimen_metrics` in its ``specimens``)."""
    acc = np.array([m["accuracy"] for m in per_split.values()])
    mca = np.array([m["mca"] for m in per_split.values()])
    out = {
        "protocol": protocol,
        "protocol_description": PROTOCOL_TEXT["holdout" if list(per_split) == [HOLDOUT] else protocol],
        "accuracy": {
            "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "per_split": {k: m["accuracy"] for k, m in per_split.items()},
        },
        "mca": {
            "mean": float(mca.mean()),
            "std": float(mca.std(ddof=1)) if len(mca) > 1 else 0.0,
            "per_split": {k: m["mca"] for k, m in per_split.items()},
        },
        "per_class": pooled["per_class"],
        "confusion": pooled["confusion"],
    }
    if per_split and all("specimens" in m for m in per_split.values()):
        sp = np.array([m["specimens"]["accuracy"] for m in per_split.values()])
        out["specimens"] = {
            "accuracy": {
                "mean": float(sp.mean()),
                "std": float(sp.std(ddof=1)) if len(sp) > 1 else 0.0,
                "per_split": {k: m["specimens"]["accuracy"] for k, m in per_split.items()},
            },
            "n": {k: m["specimens"]["n"] for k, m in per_split.items()},
            "wrong": {k: m["specimens"]["wrong"] for k, m in per_split.items()},
        }
    out.update(extra or {})
    return out


__all__ = [
    "HOLDOUT",
    "TRANSFER",
    "PAPER_CONFUSION",
    "PROTOCOLS",
    "PROTOCOL_TEXT",
    "SPECIMEN_PROTOCOLS",
    "batch_summary",
    "blocked_folds",
    "blocks",
    "check_protocol",
    "classification_metrics",
    "protocol_splits",
    "specimen_figure",
    "specimen_metrics",
    "split_figures",
    "split_metrics",
    "summarize_protocol",
]
