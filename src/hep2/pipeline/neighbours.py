"""The transductive step (off by default): each test cell's probabilities averaged, half and half, with the
mean of its K nearest cells of the same batch (a split's test cells in `hep2 ensemble`, the files of one
folder in `hep2 predict`). Cells of one specimen share their pattern and look alike, so the batch votes.
Nearness is cosine, in the members' features (each standardised and reduced to 50 principal components,
fitted on the cells the classifier was trained on, then scaled to unit length, side by side). The batch's
labels are never read; its images are, so figures with it are transductive."""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import Hep2Error

NEIGHBOUR_WEIGHT = 0.5  # a cell's own probabilities vs its neighbours' mean (chosen on SNPHEp-2 train/)
COMPONENTS = 50


def cell_features(method, features: np.ndarray) -> np.ndarray:
    """One vector per cell from a method's features: a dcae-mlp with ``tta_samples`` stores each
    autoencoder's 8 views side by side (MLPHead's layout); their mean per autoencoder is the cell's."""
    F = np.asarray(features, dtype=np.float32)
    cfg = method.cfg
    if method.name == "dcae-mlp" and cfg.tta_samples:
        F = F.reshape(len(F), max(cfg.ae_ensemble, 1), 8, -1).mean(2).reshape(len(F), -1)
    return F


class BatchNeighbours:
    """Transductive smoothing: each cell's probabilities averaged with the mean of its ``k`` nearest
    cells of the same batch, in the space of the members' features (see the module's docstring)."""

    def __init__(self, k: int, weight: float = NEIGHBOUR_WEIGHT, members: list[int] | None = None):
        if not isinstance(k, numbers.Integral) or k < 1:
            raise Hep2Error(
                f"--neighbours {k!r}: give the number of nearest cells to average with, a whole number >= 1"
            )
        self.k, self.weight = int(k), float(weight)
        self.members = members  # which of an ensemble's members give features (`Predictor`); None: all

    def uses(self, member: int) -> bool:
        return self.members is None or member in self.members

    def applies(self, n: int) -> bool:
        """Whether a batch of ``n`` cells is smoothed: only one with ``k`` cells beside each of its cells (a
        smaller batch, e.g. two cells of two specimens in one upload, would be pulled to its mean)."""
        return n > self.k

    def fit(self, blocks: list[np.ndarray]) -> "BatchNeighbours":
        """``blocks``: one (N, D) array of cell features per member that has them, for the training cells."""
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.spaces_ = [
            make_pipeline(StandardScaler(), PCA(min(COMPONENTS, *F.shape), random_state=0)).fit(F) for F in blocks
        ]
        return self

    def smooth(self, proba: np.ndarray, blocks: list[np.ndarray]) -> np.ndarray:
        """The batch's probabilities (N, C) and its cells' features (one array per member, as in fit)."""
        from sklearn.neighbors import NearestNeighbors

        if not self.applies(len(proba)):
            return proba
        Z = []
        for space, F in zip(self.spaces_, blocks):
            z = space.transform(F)
            Z.append(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12))
        idx = NearestNeighbors(n_neighbors=self.k, metric="cosine").fit(np.hstack(Z)).kneighbors(return_distance=False)
        return ((1 - self.weight) * proba + self.weight * proba[idx].mean(1)).astype(proba.dtype)


__all__ = ["BatchNeighbours", "cell_features"]
