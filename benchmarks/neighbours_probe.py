"""Choose `hep2 ensemble --neighbours K` on SNPHEp-2 train/ only (issue 6's rule; docs/record.md has the probe).

    python benchmarks/neighbours_probe.py RUN RUN... --data ../shared/data/snphep2 [--k 5 10] [--blocks 4]

RUNs are `hep2 run` folders of the members (any protocol: only their train/ rows are read), e.g. an
`improved` run and a `bow` run. Each member's cell features (`hep2.pipeline.neighbours.cell_features`) get a
standardised logistic regression (C 0.01); their probabilities are averaged, then smoothed over each
held-out cell's K nearest held-out cells with `hep2.pipeline.neighbours.BatchNeighbours`, fitted on the training
side. Two probes that keep specimens apart, as in `inner_validation.py`: 4 contiguous ID blocks per
class, and positive <-> intermediate intensity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hep2.pipeline.evaluation import blocked_folds
from hep2.pipeline.neighbours import BatchNeighbours, cell_features

sys.path.insert(0, str(Path(__file__).parent))
from inner_validation import intensity_folds, member_runs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True, help="the SNPHEp-2 folder (for the intensity probe)")
    ap.add_argument("--k", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--blocks", type=int, default=4)
    a = ap.parse_args(argv)
    members, y, tid = member_runs(a.runs, "neighbours_probe")
    feats = [cell_features(method, F) for method, F in members]
    probes = {
        "blocks": blocked_folds(y, [int(i.split("/")[1]) for i in tid], a.blocks),
        "pos<->int": intensity_folds(Path(a.data), tid),
    }
    scores: dict = {}
    for probe, folds in probes.items():
        for tr, te in folds:
            probas = []
            for F in feats:
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)).fit(F[tr], y[tr])
                probas.append(clf.predict_proba(F[te]))
            P, classes = np.mean(probas, axis=0), clf.classes_
            variants = {"no smoothing": P} | {
                f"k {k}": BatchNeighbours(k).fit([F[tr] for F in feats]).smooth(P, [F[te] for F in feats]) for k in a.k
            }
            for name, Q in variants.items():
                scores.setdefault(name, {}).setdefault(probe, []).append(float((classes[Q.argmax(1)] == y[te]).mean()))
    print(f"{', '.join(a.runs)}: {len(y)} train/ cells")
    for name, by in scores.items():
        print(f"{name:14s} " + "  ".join(f"{p} {np.mean(v):.4f}" for p, v in by.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
