"""Whole fields: the cells of a microscope image of a well, found with classical image analysis (scikit-image).

A field (about 1388x1040 or 1296x966 px, 8 or 16 bit, grey or RGB with the FITC signal in green, often with a
scale bar burned in) becomes a label image of its nuclei and a table of them:

1. **Grey**: a colour field's stain channel (``channel="auto"``: the channel holding most of the signal).
2. **Burned-in annotations** (scale bars and their text): a flat plateau of one grey level, at least 150 px, below
   the field's saturation and filling its bounding box as a rectangle does. No stained cell is flat; the bar's
   box, widened to take its text, is excluded from the field.
3. **Background**: the 5th percentile in windows of a sixth of the field (on the field shrunk 16 times), subtracted, so
   that an uneven illumination does not move the threshold.
4. **Foreground**: a grey closing joins a nucleus's dots, speckles and nucleoli into one body (7 px; widened to 15,
   then 25 px while the regions found are smaller than a nucleus 20 px across; then, once more, a quarter of the
   typical nucleus radius, never narrower than a widened closing); Otsu's threshold of the result (Gaussian sigma
   1 px; its brightest 1% counted at the 99th percentile, so that a few bright mitotic figures or specks do not
   lift it above dim nuclei, unless that leaves over half the field above it, as in a field of a few cells),
   raised to at least 5 times the
   background's noise (its median absolute deviation), so that a field with no stained cells is not cut into
   noise; holes filled.
5. **The field's own nucleus size**: the median area of the foreground's regions (those of 20 px or more, not on
   the border). Nuclei range from 20 to 120 px across between microscopes; every size rule below is a multiple of
   this median, so none is in pixels.
6. **Touching nuclei split**: a marker at each maximum of the smoothed distance transform at least 0.6 typical
   radii from any other, then a watershed of the negated distance inside the foreground; done twice, the second
   time with the median size of the nuclei the first split apart.
7. **Flags**, each a documented rule; a flagged object is kept in the table and out of the call:
   ``border`` (touches the field's edge: a cut nucleus), ``debris`` (under 25% of the median area),
   ``clump`` (over 3 times the median area: nuclei not split), ``mitotic`` (mean signal over 1.8 times the cells'
   median and area under the median: a condensed, bright mitotic figure), ``saturated`` (over 10% of its pixels at
   the field's maximum, when that is the sensor's), ``annotation`` (overlaps a burned-in annotation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import Hep2Error
from .images import CHANNELS, read_image

FLAGS = ("border", "debris", "clump", "mitotic", "saturated", "annotation")
MIN_FIELD_SIDE = 128  # a smaller image is a cell crop, not a field
DEBRIS, CLUMP, MITOTIC = 0.25, 3.0, 1.8  # shares of the median area / of the median signal (module docstring)
CLOSE = 7  # px: the first grey closing before the threshold, joining a nucleus's dots, speckles and nucleoli
MIN_NUCLEUS_AREA = np.pi * 10**2  # px: nuclei are 20 px across or more; smaller regions are their dots or speckles
MAX_CLOSE = 25  # px: the widest closing
CLOSE_SHARE = 0.25  # then, a second time, a closing of this many typical nucleus radii (odd, 3 to 25 px)
SHRINK = 16  # the background is estimated on the field shrunk this many times (it varies slowly)
SMOOTH = 1.0  # the Gaussian sigma (px) of the field before its threshold
OTSU_TOP = 99  # percentile: brighter pixels count at this level in Otsu's threshold
SPLIT = 0.6  # two nuclei's centres are at least this many typical radii apart


@dataclass
class Field:
    """A segmented field: its grey image, the nuclei's label image (0 background) and one row per nucleus."""

    grey: np.ndarray  # the stain channel as read (raw grey levels, float32)
    labels: np.ndarray  # int32, 0 = background, k = nucleus k (the table's ``cell``)
    cells: list[dict]  # cell, bbox (r0, c0, r1, c1), centroid, area, mean, max, flags
    background: float  # the background's median grey level
    noise: float  # the background's noise (scaled median absolute deviation)
    typical_area: float  # the median nucleus area, px
    annotation: np.ndarray | None = None  # pixels of burned-in annotations
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[dict]:
        """The cells without a flag: those a call reads."""
        return [c for c in self.cells if not c["flags"]]

    @property
    def nuclei(self) -> bool:
        """Whether the objects found are the size of nuclei (the median at least a nucleus 20 px across): not where
        only dots were found (bright dots on dim nuclei, such as nuclear dots, or a magnification below the range)."""
        return self.typical_area >= MIN_NUCLEUS_AREA

    def signal_index(self) -> float:
        """The cells' signal over the background: the median of the kept cells' mean grey level above the
        background, in units of the background level (0 where no cell is kept). A negative well's nuclei are
        barely brighter than the background; a positive one's are several times brighter."""
        kept = self.kept
        if not kept:
            return 0.0
        return float(np.median([c["mean"] for c in kept]) - self.background) / max(self.background, 1.0)


def field_grey(path, channel: str = "auto") -> np.ndarray:
    """A field as one grey float32 array: ``auto`` takes a colour field's channel with the most signal (FITC:
    green), ``mean`` averages R, G and B; a grey field is itself."""
    if channel != "auto" and channel not in CHANNELS:
        raise Hep2Error(f"channel={channel!r}: a field's grey is one of auto, {', '.join(CHANNELS)}")
    rgb = read_image(path, "rgb" if channel == "auto" else channel)
    if rgb.ndim == 3:  # colour: the channel holding the most signal above each channel's own floor
        signal = [float((c - np.percentile(c, 1)).clip(0).sum()) for c in rgb]
        rgb = rgb[int(np.argmax(signal))]
    if min(rgb.shape) < MIN_FIELD_SIDE:
        raise Hep2Error(
            f"{path} is {rgb.shape[1]}x{rgb.shape[0]} px: too small for a field (at least {MIN_FIELD_SIDE} px a "
            "side); a cut-out cell is classified by `hep2 predict` as it is"
        )
    return rgb.astype(np.float32, copy=False)


def annotation_mask(grey: np.ndarray) -> np.ndarray | None:
    """Pixels of burned-in annotations (scale bars and their labels), or None where there are none."""
    from scipy import ndimage as ndi

    top = float(grey.max())
    flat = (ndi.maximum_filter(grey, 3) == ndi.minimum_filter(grey, 3)) & (grey > np.median(grey)) & (grey < top)
    lab, n = ndi.label(flat)
    if not n:
        return None
    out = np.zeros(grey.shape, bool)
    for k, sl in enumerate(ndi.find_objects(lab), 1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        area = int((lab[sl] == k).sum())
        if area >= 150 and area >= 0.7 * h * w and max(h, w) >= 3 * min(h, w):  # a filled bar, not a cell
            pad_r, pad_c = 2 * h + 10, max(w // 5, 10)
            out[
                max(sl[0].start - pad_r, 0) : sl[0].stop + pad_r,
                max(sl[1].start - pad_c, 0) : sl[1].stop + pad_c,
            ] = True
    return out if out.any() else None


def segment_field(grey: np.ndarray, *, min_area: int = 20) -> Field:
    """The nuclei of one field (``field_grey``), as the module docstring describes."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not np.isfinite(grey).all():
        raise Hep2Error("the field has NaN or infinite pixels: export it again from the microscope's software")
    work = grey.astype(np.float32)
    annot = annotation_mask(work)
    small = work[::SHRINK, ::SHRINK]
    floor = ndi.percentile_filter(small, 5, size=max(5, min(small.shape) // 6))
    background = ndi.zoom(ndi.uniform_filter(floor, 3), SHRINK, order=1)[: work.shape[0], : work.shape[1]]
    background = np.pad(
        background, ((0, work.shape[0] - background.shape[0]), (0, work.shape[1] - background.shape[1])), "edge"
    )
    free = work - background
    if annot is not None:
        free[annot] = 0.0
    resid = free[free <= np.percentile(free, 50)]
    noise = float(1.4826 * np.median(np.abs(resid - np.median(resid)))) or 1.0
    bg_level = float(np.median(work[work <= np.percentile(work, 50)]))

    def empty(note: str) -> Field:
        return Field(grey, np.zeros(grey.shape, np.int32), [], bg_level, noise, 0.0, annot, [note])

    if np.ptp(free) <= 0:
        return empty("the field is blank")
    close = CLOSE
    fg, lab, areas, typical = _foreground(free, close, noise, min_area)
    while 0 < typical < MIN_NUCLEUS_AREA and close < MAX_CLOSE:  # dots or speckles, not nuclei: join them wider
        close = min(2 * close + 1, MAX_CLOSE)
        fg, lab, areas, typical = _foreground(free, close, noise, min_area)
    if typical <= 0:
        return empty("no cells found")
    # again with a closing scaled to the nuclei found (never narrower than one that had to join dots)
    scaled = int(np.clip(2 * round(CLOSE_SHARE * np.sqrt(typical / np.pi)) + 1, 3, MAX_CLOSE))
    fg, lab, areas, typical = _foreground(free, scaled if close == CLOSE else max(scaled, close), noise, min_area)
    # drop specks before splitting, so that they seed no watershed
    fg &= np.isin(lab, 1 + np.flatnonzero(areas >= max(min_area, DEBRIS * typical / 4)))
    edt, regions = ndi.distance_transform_edt(fg), ndi.label(fg)[0]
    for _ in range(2):  # the second pass with the size of the nuclei the first one split apart
        radius = np.sqrt(typical / np.pi)
        dist = ndi.gaussian_filter(edt, max(radius / 6, 1.0))
        peaks = peak_local_max(dist, min_distance=max(int(radius * SPLIT), 2), labels=regions, exclude_border=False)
        markers = np.zeros(fg.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = watershed(-dist, markers, mask=fg).astype(np.int32)
        areas = np.bincount(labels.ravel())[1:]
        typical = float(np.median(areas[areas >= max(min_area, DEBRIS * typical)]))
    cells = _measure(labels, work, annot, typical)
    notes = []
    if typical < MIN_NUCLEUS_AREA:
        notes.append(
            f"the objects found are smaller than a nucleus (median {typical:.0f} px, a nucleus 20 px across is "
            f"{MIN_NUCLEUS_AREA:.0f}): dots without their nuclei, or a magnification below the range"
        )
    return Field(grey, labels, cells, bg_level, noise, typical, annot, notes)


def _foreground(free: np.ndarray, close: int, noise: float, min_area: int):
    """The foreground of a background-free field after a grey closing of ``close`` px: the mask, its regions,
    their areas and their median area (of those of ``min_area`` px or more, not on the border)."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    flat = ndi.gaussian_filter(ndi.grey_closing(free, size=close), SMOOTH)
    # Otsu's threshold of the field without its brightest 1%, so that a few bright mitotic figures, specks or
    # saturated spots do not lift it above dim nuclei; never under 5 noise levels. In a field of a few cells that 1%
    # is all the cells: the threshold then falls into the background, and Otsu's of the whole field serves instead
    threshold = max(float(threshold_otsu(np.minimum(flat, np.percentile(flat, OTSU_TOP)))), 5 * noise)
    if (flat > threshold).mean() > 0.5:
        threshold = max(float(threshold_otsu(flat)), 5 * noise)
    fg = ndi.binary_fill_holes(ndi.binary_opening(flat > threshold, iterations=1))
    lab, n = ndi.label(fg)
    areas = np.bincount(lab.ravel())[1:]
    if not n:
        return fg, lab, areas, 0.0
    boxes = ndi.find_objects(lab)
    inner = [a for a, b in zip(areas, boxes) if a >= min_area and not _on_border(_bbox(b), lab.shape)]
    return fg, lab, areas, float(np.median(inner)) if inner else float(np.median(areas))


def _bbox(sl) -> tuple[int, int, int, int]:
    return sl[0].start, sl[1].start, sl[0].stop, sl[1].stop


def _on_border(bbox, shape) -> bool:
    r0, c0, r1, c1 = bbox
    return r0 == 0 or c0 == 0 or r1 == shape[0] or c1 == shape[1]


def _measure(labels: np.ndarray, grey: np.ndarray, annot, typical: float) -> list[dict]:
    from skimage.measure import regionprops

    top = float(grey.max())
    sensor_max = top >= (65535 if top > 255 else 255) * 0.98  # the sensor's saturation, not just the brightest
    cells = []
    for r in regionprops(labels, intensity_image=grey):
        px = grey[r.slice][r.image]
        cells.append(
            {
                "cell": int(r.label),
                "bbox": tuple(int(v) for v in r.bbox),
                "centroid": tuple(round(float(v), 1) for v in r.centroid),
                "area": int(r.area),
                "mean": float(px.mean()),
                "max": float(px.max()),
                "saturated_share": float((px >= top).mean()) if sensor_max else 0.0,
                "annotation": bool(annot is not None and annot[r.slice][r.image].any()),
            }
        )
    median_mean = float(np.median([c["mean"] for c in cells])) if cells else 0.0
    for c in cells:
        flags = []
        if _on_border(c["bbox"], labels.shape):
            flags.append("border")
        if c["area"] < DEBRIS * typical:
            flags.append("debris")
        if c["area"] > CLUMP * typical:
            flags.append("clump")
        if c["mean"] > MITOTIC * median_mean and c["area"] < typical:
            flags.append("mitotic")
        if c.pop("saturated_share") > 0.1:
            flags.append("saturated")
        if c.pop("annotation"):
            flags.append("annotation")
        c["flags"] = flags
    return cells


def cell_crop(fld: Field, cell: dict, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """One nucleus cut from its field with ``margin`` (a share of its size) around it: (grey crop, its mask, with
    the other nuclei in the crop left out of the mask)."""
    r0, c0, r1, c1 = cell["bbox"]
    pad = int(round(margin * max(r1 - r0, c1 - c0)))
    r0, c0 = max(r0 - pad, 0), max(c0 - pad, 0)
    r1, c1 = min(r1 + pad, fld.labels.shape[0]), min(c1 + pad, fld.labels.shape[1])
    return fld.grey[r0:r1, c0:c1], fld.labels[r0:r1, c0:c1] == cell["cell"]


# ----------------------------------------------------------------------------------- measuring a segmentation


def match_objects(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> dict:
    """Object-level agreement of two label images (0 background): true positives are pairs with IoU > ``iou``
    (each object in one pair at most, which IoU > 0.5 makes unique); precision, recall and F1 over objects; the
    mean IoU of the matched pairs; splits (true objects that 2 or more predicted objects each cover by at least
    half of themselves) and merges (predicted objects that cover 2 or more true objects by at least half of each).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((10, 10), int); truth[1:5, 1:5] = 1; truth[6:9, 6:9] = 2
    >>> pred = np.zeros((10, 10), int); pred[1:5, 1:5] = 7
    >>> m = match_objects(pred, truth)
    >>> m["tp"], m["precision"], m["recall"], round(m["f1"], 3)
    (1, 1.0, 0.5, 0.667)
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise Hep2Error(f"the segmentation is {pred.shape} but its truth is {truth.shape}: give masks of the field")
    both = (pred > 0) | (truth > 0)
    p_ids, p = np.unique(pred[both], return_inverse=True)
    t_ids, t = np.unique(truth[both], return_inverse=True)
    inter = np.zeros((len(p_ids), len(t_ids)), np.int64)
    np.add.at(inter, (p, t), 1)
    p_area, t_area = inter.sum(1), inter.sum(0)
    keep_p, keep_t = p_ids > 0, t_ids > 0
    inter, p_area, t_area = inter[keep_p][:, keep_t], p_area[keep_p], t_area[keep_t]
    union = p_area[:, None] + t_area[None, :] - inter
    ious = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    matched = ious > iou
    tp = int(matched.sum())
    covers_pred = inter >= 0.5 * p_area[:, None]  # predicted object mostly inside the true one
    covers_true = inter >= 0.5 * t_area[None, :]
    return {
        **object_scores(tp, len(p_area), len(t_area)),
        "mean_iou": float(ious[matched].mean()) if tp else 0.0,
        "splits": int((covers_pred.sum(0) >= 2).sum()),
        "merges": int((covers_true.sum(1) >= 2).sum()),
    }


def object_scores(tp: int, predicted: int, true: int) -> dict:
    """Object counts and their precision, recall and F1."""
    precision, recall = (tp / predicted if predicted else 0.0), (tp / true if true else 0.0)
    return {
        "tp": tp,
        "predicted": predicted,
        "true": true,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if tp else 0.0,
    }


def outlines_to_labels(outlines: np.ndarray, min_area: int = 20) -> np.ndarray:
    """Hand-drawn cell outlines (lines on 0) to a label image: each closed outline filled, the lines given to
    the regions they bound, regions under ``min_area`` px and the background (the region on the border) left
    out."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    lines = outlines > 0
    lab, _ = ndi.label(~lines)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    lab[np.isin(lab, border)] = 0
    areas = np.bincount(lab.ravel())
    lab[areas[lab] < min_area] = 0
    lab = expand_labels(lab, 2) * (lines | (lab > 0))  # each outline's pixels to the region inside it
    return _relabel(lab)


def mask_to_labels(mask: np.ndarray, min_area: int = 20) -> np.ndarray:
    """True nuclei from a mask image, as datasets ship them, to a label image (regions under ``min_area`` px left
    out): a colour label image (3, H, W), each colour a nucleus; a grey label image, each level a nucleus; or a
    binary mask, each connected region a nucleus. A mask whose non-zero pixels are nearly all (90%) at its top
    level is binary even with other levels (anti-aliased or JPEG-compressed edges): cut at half its top level."""
    from scipy import ndimage as ndi

    if mask.ndim == 3 and (mask == mask[:1]).all():  # grey saved as colour
        mask = mask[0]
    elif mask.ndim == 3:  # colour labels: each distinct colour one id, black (the lowest) 0
        mask = np.unique(mask.reshape(len(mask), -1).T, axis=0, return_inverse=True)[1].reshape(mask.shape[1:])
    top = mask.max()
    nonzero = mask[mask > 0]
    if not len(nonzero):
        return np.zeros(mask.shape, np.int32)
    binary = len(np.unique(nonzero)) == 1 or np.mean(nonzero == top) >= 0.9
    lab = ndi.label(mask > top / 2)[0] if binary else mask.astype(np.int64)
    areas = np.bincount(lab.ravel())
    lab[areas[lab] < min_area] = 0
    return _relabel(lab)


def _relabel(lab: np.ndarray) -> np.ndarray:
    ids = np.unique(lab)
    ids = ids[ids > 0]
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[lab]


__all__ = [
    "FLAGS",
    "Field",
    "annotation_mask",
    "cell_crop",
    "field_grey",
    "mask_to_labels",
    "match_objects",
    "object_scores",
    "outlines_to_labels",
    "segment_field",
]
