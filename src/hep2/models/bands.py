"""The concentric bands ("donuts") a cell is cut into, so that a bag of words is counted over the whole cell
and over each band: shared by the autoencoders' words and the hand-crafted features."""

from __future__ import annotations

import numpy as np

# the concentric bands ("donuts") the cell pyramids count over, besides the whole cell: edges as fractions of the
# cell's half-side (chosen for `bow` on SNPHEp-2 train/, docs/record.md; `shape-index` and the autoencoders' words too)
BANDS = (0.3, 0.55, 0.8)


def centre_distance(h: int, w: int) -> np.ndarray:
    """Each position's distance from the centre of an (h, w) grid, normalised: 0 at the centre, 1 at
    the middle of an edge (the measure the concentric bands of :class:`~hep2.features.BoWFeatures`,
    :class:`~hep2.features.ShapeIndexFeatures` and the autoencoders' words cut)."""
    yy, xx = np.mgrid[:h, :w]
    return np.hypot((yy - (h - 1) / 2) / max(h / 2, 1), (xx - (w - 1) / 2) / max(w / 2, 1))


def band_count(rings) -> int:
    """How many concentric bands the ring edges cut the cell into (0 without rings: the whole cell only)."""
    return len(rings) + 1 if len(rings) else 0


__all__ = ["BANDS", "band_count", "centre_distance"]
