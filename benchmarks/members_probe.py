"""Would a method help an ensemble? Screen it on SNPHEp-2 train/ only (issue 6's rule; docs/record.md has the screens).

    python benchmarks/members_probe.py RUN RUN... --data ../shared/data/snphep2

RUNs are `hep2 run` folders of the candidate members (any protocol: only their train/ rows are read),
e.g. an `improved` run, a `bow` run and a `shape-index` run. On each probe fold every member's own
classifier (a fresh ``method.classifier()``, as `hep2 run` fits it) is fitted on its features of the
training side; the table gives each member alone (the most probable class by its probabilities) and the
probabilities averaged over every subset of two or more members (what `hep2 ensemble` does), on three
probes that keep specimens apart:

- 4 contiguous ID blocks per class (`inner_validation.py`'s default),
- 5 blocks (the folds of `hep2 run --protocol blocked`),
- positive <-> intermediate intensity (train on one, test on the other, mean of both ways);

and with ``--more`` two more, neither of which predicted ``denoise``'s loss under official:

- crossed intensity: for every pair of classes, train on their positive cells and the other classes'
  intermediate ones, test on the rest, and back (the class <-> brightness link flips);
- paired halves: hold out one contiguous half of each class's positive cells and of its intermediate cells,
  so that every class keeps both intensity levels in training, as in the official splits.

Accuracy is the mean over each probe's folds.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from hep2.pipeline.evaluation import blocked_folds

sys.path.insert(0, str(Path(__file__).parent))
from inner_validation import crossed_folds, intensity_folds, member_runs, paired_folds  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True, help="the SNPHEp-2 folder (for the intensity probes)")
    ap.add_argument("--more", action="store_true", help="also the crossed-intensity and paired-halves probes")
    a = ap.parse_args(argv)
    members, y, tid = member_runs(a.runs, "members_probe")
    block_ids = [int(i.split("/")[1]) for i in tid]
    probes = {
        "4 blocks": blocked_folds(y, block_ids, 4),
        "5 blocks": blocked_folds(y, block_ids, 5),
        "pos<->int": intensity_folds(Path(a.data), tid),
    }
    if a.more:
        probes |= {"crossed": crossed_folds(Path(a.data), tid, y), "paired halves": paired_folds(Path(a.data), tid, y)}
    names = [Path(r).name for r in a.runs]
    subsets = [(i,) for i in range(len(members))] + [
        c for n in range(2, len(members) + 1) for c in itertools.combinations(range(len(members)), n)
    ]
    scores = {s: {} for s in subsets}
    for probe, folds in probes.items():
        for tr, te in folds:
            probas = []
            for method, F in members:
                clf = method.classifier().fit(F[tr], y[tr])
                probas.append(clf.predict_proba(F[te]))
                classes = clf.classes_
            for s in subsets:
                P = np.mean([probas[i] for i in s], axis=0)
                scores[s].setdefault(probe, []).append(float((classes[P.argmax(1)] == y[te]).mean()))
        print(f"{probe} done", file=sys.stderr, flush=True)
    print(f"{', '.join(a.runs)}: {len(y)} train/ cells")
    print("| members | " + " | ".join(probes) + " | mean |")
    print("|---" * (len(probes) + 2) + "|")
    for s in subsets:
        means = [np.mean(scores[s][p]) for p in probes]
        print(
            f"| {' + '.join(names[i] for i in s)} | "
            + " | ".join(f"{m:.4f}" for m in means)
            + f" | {np.mean(means):.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
