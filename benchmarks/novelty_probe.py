"""Could a field's cells say "not a pattern this model knows" from how far their features lie from the training
cells'? Probed on a run's training features only (no field, no test label):

    python benchmarks/novelty_probe.py RUN

RUN is a `hep2 run` folder with ``features.npy`` and ``features_ids.csv`` (any method; e.g. the general model,
`hep2 run snphep2:... i3a:... --method shape-index`). Fine and coarse speckled are read as speckled.

- **Leave one class out**: each class in turn plays the unknown pattern. A scorer is fitted on 80% of the other
  classes' cells; its threshold is the 95th percentile of the scores of the held-out 20% (5% of known cells
  flagged). The table gives the AUROC of unknown against held-out known cells and the share of unknown cells
  flagged.
- **Another lab**: a scorer fitted on one source's cells (threshold as above) scores the other source's cells of
  the classes they share: the share flagged is what a new lab's known patterns would cost.

Scorers, in the features standardised, then reduced by PCA to 64 dimensions: the distance to the 10th nearest
training cell (``knn``), and the Mahalanobis distance to the nearest class mean under the pooled covariance
(``mahalanobis``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

SPECKLED = {"fine_speckled": "speckled", "coarse_speckled": "speckled"}
FLAGGED = 0.95  # the quantile of known cells' scores above which a cell is flagged


class Scorer:
    def __init__(self, kind: str, dims: int = 64, k: int = 10):
        self.kind, self.dims, self.k = kind, dims, k

    def _z(self, X):
        return self.pca.transform(self.scaler.transform(X))

    def fit(self, X, y):
        self.scaler = StandardScaler().fit(X)
        self.pca = PCA(self.dims, random_state=0).fit(self.scaler.transform(X))
        Z = self._z(X)
        if self.kind == "knn":
            self.nn = NearestNeighbors(n_neighbors=self.k).fit(Z)
        else:
            self.classes = np.unique(y)
            self.means = np.stack([Z[y == c].mean(0) for c in self.classes])
            residuals = Z - self.means[np.searchsorted(self.classes, y)]
            self.precision = np.linalg.inv(np.cov(residuals.T) + 1e-6 * np.eye(Z.shape[1]))
        return self

    def score(self, X):
        Z = self._z(X)
        if self.kind == "knn":
            return self.nn.kneighbors(Z)[0][:, -1]
        D = Z[:, None, :] - self.means[None]
        return np.sqrt(np.einsum("ncd,de,nce->nc", D, self.precision, D).min(1))


def split(idx, rng, share=0.8):
    idx = rng.permutation(idx)
    cut = int(share * len(idx))
    return idx[:cut], idx[cut:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a hep2 run folder with features.npy and features_ids.csv")
    args = ap.parse_args(argv)
    F = np.load(args.run / "features.npy")
    with open(args.run / "features_ids.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    label = np.array([SPECKLED.get(r["label"], r["label"]) for r in rows])
    source = np.array([r["id"].split(":")[0] if ":" in r["id"] else "" for r in rows])
    sources = sorted(map(str, set(source)))
    print(f"{args.run}: {len(F)} cells, {F.shape[1]} features, sources {' and '.join(sources)}")
    for kind in ("knn", "mahalanobis"):
        rng = np.random.default_rng(0)
        print(f"\n{kind}\n  {'unknown class':<20}{'AUROC':>7}{'unknown flagged':>17}")
        aurocs = []
        for c in np.unique(label):
            fit, held = split(np.flatnonzero(label != c), rng)
            s = Scorer(kind).fit(F[fit], label[fit])
            known, unknown = s.score(F[held]), s.score(F[label == c])
            auroc = roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown])
            aurocs.append(auroc)
            print(f"  {c:<20}{auroc:>7.3f}{np.mean(unknown > np.quantile(known, FLAGGED)):>17.3f}")
        print(f"  {'mean':<20}{np.mean(aurocs):>7.3f}")
        for a in sources:
            for b in sorted(set(sources) - {a}):
                fit, held = split(np.flatnonzero(source == a), rng)
                s = Scorer(kind).fit(F[fit], label[fit])
                other = (source == b) & np.isin(label, np.unique(label[fit]))
                flagged = np.mean(s.score(F[other]) > np.quantile(s.score(F[held]), FLAGGED))
                print(f"  another lab: fitted on {a}, {b}'s cells of shared classes flagged {flagged:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
