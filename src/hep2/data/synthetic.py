"""A generator of synthetic HEp-2 cell images that look like SNPHEp-2 cells.

It is for tests, demos and smoke runs of the pipeline when the real data is not at hand. The
images mimic what matters about the real set (see PAPER.md and data/snphep2/README.md):

* 8-bit grayscale crops of one cell each, 32 to 125 px a side (median about 48x48), the
  nucleus roughly centred on a dark background, dim raw intensities (median image max ~78);
* five staining patterns: homogeneous (smooth fill, a slightly brighter rim), fine speckled
  (dense fine grain, dark nucleoli), coarse speckled (fewer, larger irregular blotches),
  nucleolar (1 to 6 large bright bodies on a dim nucleus) and centromere (40 to 80 discrete
  bright dots);
* specimen effects: every specimen (slide) has one pattern, its own gain, background, blur,
  noise and a shift of the pattern's own parameters (speckle size, dot count and brightness,
  cell size, pattern contrast), and an intensity label (positive = brighter, intermediate =
  dimmer). Cells of one specimen therefore resemble each other more than cells of another
  specimen of the same class, so that a specimen-disjoint split is measurably harder than a
  random cell-level split (LBP + SVM on 200 cells: about 0.95 under random 5-fold CV, about
  0.70-0.94 under specimen-disjoint 5-fold CV, depending on the seed).

Specimens are given classes round-robin (specimen i has class i % n_classes), so an unshuffled
``sklearn.model_selection.GroupKFold`` with 5 folds over 20 specimens puts every specimen of one
class in the same fold and leaves that class out of training; use ``StratifiedGroupKFold`` (or
shuffle) for specimen-disjoint cross-validation on this set.

Public API: :data:`PATTERNS`, :func:`make_synthetic`, :func:`generate_cell`,
:func:`specimen_style`. Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import Hep2Error
from .images import png_bytes

PATTERNS = ("homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere")

MIN_SIDE, MAX_SIDE = 32, 125
_SALT = 0x4E9F2  # keeps these streams apart from other uses of the same seed


# --------------------------------------------------------------------------------------------
# specimen-level parameters
# --------------------------------------------------------------------------------------------


def specimen_style(rng: np.random.Generator) -> dict:
    """Draw the parameters shared by all cells of one specimen (slide).

    Keys: ``intensity`` ('positive' or 'intermediate'); ``peak``, the 8-bit level of the
    brightest stained structures (26-58 for intermediate, 62-190 for positive specimens; each
    cell varies about it by ~15%); ``background`` (dark level outside the cell, as a fraction
    of ``peak``, plus 1.5); ``blur`` (optical blur sigma, px); ``noise`` (read-noise sd as a
    fraction of ``peak``); ``shot`` (shot-noise variance per grey level); ``size`` and
    ``aspect`` (nucleus size factor and mean elongation); ``haze`` (out-of-focus glow round
    the nucleus); and the shifts of the patterns' own parameters: ``speckle`` (speckle / dot
    size factor), ``dots`` (dot / body count factor), ``dot_brightness``, ``contrast``
    (texture against the diffuse nuclear stain), ``base`` (factor on the diffuse stain),
    ``rim`` (brighter rim of homogeneous cells), ``density`` (shift of the speckle threshold:
    fewer / more speckles), ``nucleoli`` (how dark the unstained nucleoli of speckled cells are).
    """
    positive = bool(rng.random() < 0.5)
    if positive:
        peak = float(np.exp(rng.uniform(np.log(62.0), np.log(190.0))))
    else:
        peak = float(rng.uniform(26.0, 58.0))
    return {
        "intensity": "positive" if positive else "intermediate",
        "peak": peak,
        "background": float(rng.uniform(0.02, 0.07)),
        "blur": float(rng.uniform(0.35, 0.8)),
        "noise": float(rng.uniform(0.012, 0.025)),
        "shot": float(rng.uniform(0.05, 0.25)),
        "size": float(np.exp(rng.normal(0.0, 0.13))),
        "speckle": float(np.exp(rng.normal(0.0, 0.15))),
        "dots": float(np.exp(rng.normal(0.0, 0.18))),
        "dot_brightness": float(rng.uniform(0.65, 1.0)),
        "contrast": float(rng.uniform(0.6, 1.0)),
        "base": float(np.exp(rng.normal(0.0, 0.25))),
        "aspect": float(rng.uniform(1.05, 1.45)),
        "haze": float(rng.uniform(0.0, 0.12)),
        "rim": float(rng.uniform(0.0, 0.3)),
        "density": float(rng.normal(0.0, 0.25)),
        "nucleoli": float(rng.uniform(0.3, 0.75)),
    }


def _cell_style(rng: np.random.Generator, style: dict | None) -> dict:
    return specimen_style(rng) if style is None else style


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def _smooth_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit sd."""
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    sd = n.std()
    return (n - n.mean()) / (sd if sd > 0 else 1.0)


def _blobs(shape, centres, radii, amps, sharp: float = 1.0) -> np.ndarray:
    """Sum of Gaussian-ish round blobs (centres as (y, x) arrays)."""
    h, w = shape
    out = np.zeros(shape)
    yy = np.arange(h)[:, None]
    xx = np.arange(w)[None, :]
    for (cy, cx), r, a in zip(centres, radii, amps):
        y0, y1 = max(int(cy - 3 * r), 0), min(int(cy + 3 * r) + 2, h)
        x0, x1 = max(int(cx - 3 * r), 0), min(int(cx + 3 * r) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        d2 = ((yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2) / (r * r)
        out[y0:y1, x0:x1] += a * np.exp(-0.5 * d2**sharp)
    return out


def _dots(shape, ys, xs, amps, sigma: float) -> np.ndarray:
    """Point sources blurred to Gaussian spots of peak ~amp."""
    img = np.zeros(shape)
    iy = np.clip(np.round(ys).astype(int), 0, shape[0] - 1)
    ix = np.clip(np.round(xs).astype(int), 0, shape[1] - 1)
    np.add.at(img, (iy, ix), amps)
    return ndi.gaussian_filter(img, sigma, mode="constant") * (2 * np.pi * sigma * sigma)


def _points_in_nucleus(n, geo, rng, rmax=0.85, min_dist=0.0):
    """n points spread uniformly over the nucleus (inside rmax of its radius)."""
    cy, cx, a, b, th = geo["cy"], geo["cx"], geo["a"], geo["b"], geo["theta"]
    t = rng.uniform(0, 2 * np.pi, n)
    rr = rmax * np.sqrt(rng.uniform(0, 1, n))
    u, v = rr * a * np.cos(t), rr * b * np.sin(t)
    ys = cy + u * np.sin(th) + v * np.cos(th)
    xs = cx + u * np.cos(th) - v * np.sin(th)
    if min_dist > 0 and n > 1:
        keep = [0]
        for i in range(1, n):
            d = np.hypot(ys[keep] - ys[i], xs[keep] - xs[i])
            if d.min() >= min_dist:
                keep.append(i)
        ys, xs = ys[keep], xs[keep]
    return ys, xs


def _geometry(rng: np.random.Generator, style: dict) -> dict:
    """Crop size, nucleus ellipse (with a wobbly outline) and its soft mask."""
    r = 20.5 * style["size"] * float(np.exp(rng.normal(0.0, 0.2)))
    asp = max(1.0, style["aspect"] * float(np.exp(rng.normal(0.0, 0.08))))
    a, b = r * np.sqrt(asp), r / np.sqrt(asp)
    a = float(np.clip(a, 11.0, 57.0))
    b = float(np.clip(b, 9.0, 55.0))
    th = float(rng.uniform(0, np.pi))
    half_w = np.sqrt((a * np.cos(th)) ** 2 + (b * np.sin(th)) ** 2)
    half_h = np.sqrt((a * np.sin(th)) ** 2 + (b * np.cos(th)) ** 2)
    margin = rng.uniform(1.5, 5.0, 2)
    h = int(np.clip(round(2 * half_h * 1.04 + 2 * margin[0]), MIN_SIDE, MAX_SIDE))
    w = int(np.clip(round(2 * half_w * 1.04 + 2 * margin[1]), MIN_SIDE, MAX_SIDE))
    cy = (h - 1) / 2 + rng.uniform(-1.5, 1.5)
    cx = (w - 1) / 2 + rng.uniform(-1.5, 1.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(th) + dy * np.sin(th)
    v = -dx * np.sin(th) + dy * np.cos(th)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v / b, u / a)
    edge = np.ones_like(phi)
    for k in range(2, 6):  # slight irregularity of the outline
        edge += rng.normal(0.0, 0.035 / (k - 1)) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    dist = (edge - rho) * np.sqrt(a * b)  # ~ px inside the outline (negative outside)
    mask = np.clip(dist / 1.6 + 0.5, 0.0, 1.0)
    return {
        "h": h,
        "w": w,
        "cy": cy,
        "cx": cx,
        "a": a,
        "b": b,
        "theta": th,
        "rho": rho / edge,
        "dist": dist,
        "mask": mask,
    }


def _dark_nucleoli(geo, rng, n_range=(1, 4), depth=0.65) -> np.ndarray:
    """A multiplicative map < 1 where unstained nucleoli sit."""
    shape = (geo["h"], geo["w"])
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    ys, xs = _points_in_nucleus(n, geo, rng, rmax=0.55)
    rad = np.sqrt(geo["a"] * geo["b"]) * rng.uniform(0.09, 0.16, len(ys))
    holes = _blobs(shape, zip(ys, xs), rad, np.full(len(ys), 1.0), sharp=1.6)
    return 1.0 - depth * np.clip(holes, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# the patterns: each returns the stain map (about 0..1) inside the nucleus
# --------------------------------------------------------------------------------------------


def _homogeneous(geo, rng, st):
    shape = (geo["h"], geo["w"])
    r = np.sqrt(geo["a"] * geo["b"])
    f = 0.82 + 0.07 * _smooth_noise(shape, r / 3.0, rng)
    rim = np.exp(-0.5 * ((geo["dist"] - 2.0) / 2.0) ** 2)
    f += st["rim"] * float(np.exp(rng.normal(0.0, 0.2))) * rim
    f += 0.035 * st["contrast"] * _smooth_noise(shape, 0.8, rng)
    return f


def _fine_speckled(geo, rng, st):
    shape = (geo["h"], geo["w"])
    r = np.sqrt(geo["a"] * geo["b"])
    sig = 0.65 * st["speckle"] * float(np.exp(rng.normal(0, 0.05)))
    grain = np.clip(_smooth_noise(shape, sig, rng) + 0.3 - st["density"], 0.0, None)
    base = 0.42 * st["base"] ** 0.5
    f = base + 0.38 * st["contrast"] * grain + 0.05 * _smooth_noise(shape, r / 3.0, rng)
    f *= _dark_nucleoli(geo, rng, (1, 4), depth=st["nucleoli"] * rng.uniform(0.85, 1.15))
    return f


def _coarse_speckled(geo, rng, st):
    shape = (geo["h"], geo["w"])
    r = np.sqrt(geo["a"] * geo["b"])
    sig = 2.2 * st["speckle"] * float(np.exp(rng.normal(0, 0.07)))
    blot = np.clip(_smooth_noise(shape, sig, rng) - 0.2 - st["density"], 0.0, None) ** 1.2
    grain = np.clip(_smooth_noise(shape, 0.9, rng), 0.0, None)
    base = 0.3 * st["base"] ** 0.5
    f = base + 0.55 * st["contrast"] * blot + 0.08 * grain + 0.04 * _smooth_noise(shape, r / 3.0, rng)
    f *= _dark_nucleoli(geo, rng, (0, 3), depth=0.7 * st["nucleoli"] * rng.uniform(0.85, 1.15))
    return f


def _nucleolar(geo, rng, st):
    shape = (geo["h"], geo["w"])
    r = np.sqrt(geo["a"] * geo["b"])
    mean_n = 3.0 * st["dots"]
    n = int(np.clip(rng.poisson(mean_n), 1, 6))
    ys, xs = _points_in_nucleus(n, geo, rng, rmax=0.6, min_dist=0.25 * r)
    rad = r * rng.uniform(0.08, 0.15, len(ys)) * st["speckle"] ** 0.5
    amps = st["dot_brightness"] * rng.uniform(0.75, 1.0, len(ys))
    bodies = _blobs(shape, zip(ys, xs), rad, amps, sharp=1.3)
    # irregular outlines: modulate by a little texture
    bodies *= 1.0 + 0.25 * _smooth_noise(shape, 1.0, rng)
    base = 0.16 * st["base"]
    f = base + 0.06 * np.clip(_smooth_noise(shape, 0.9, rng), 0, None) + bodies
    return f


def _centromere(geo, rng, st):
    shape = (geo["h"], geo["w"])
    r = np.sqrt(geo["a"] * geo["b"])
    n = int(np.clip(rng.normal(60.0 * st["dots"], 7.0), 40, 80))
    ys, xs = _points_in_nucleus(n, geo, rng, rmax=0.88)
    sig = 0.65 * st["speckle"] ** 0.5 * float(np.exp(rng.normal(0, 0.05)))
    amps = st["dot_brightness"] * rng.uniform(0.45, 1.0, n)
    f = 0.1 * st["base"] + _dots(shape, ys, xs, amps, sig)
    f += 0.04 * _smooth_noise(shape, r / 4.0, rng)
    return f


_RENDER = {
    "homogeneous": _homogeneous,
    "fine_speckled": _fine_speckled,
    "coarse_speckled": _coarse_speckled,
    "nucleolar": _nucleolar,
    "centromere": _centromere,
}


def generate_cell(pattern: str, rng: np.random.Generator, specimen_style: dict | None = None) -> np.ndarray:
    """One cell image (2-D uint8) of ``pattern``.

    ``specimen_style`` is a dict from :func:`specimen_style` (the slide's gain, blur, noise and
    pattern shifts); without it a fresh one is drawn from ``rng``.
    """
    st = _cell_style(rng, specimen_style)
    stain, _, peak = cell_stain(pattern, rng, st)
    img = 1.5 + st["background"] * st["peak"] + stain
    img += rng.standard_normal(img.shape) * np.sqrt((st["noise"] * peak) ** 2 + st["shot"] * np.maximum(img, 0.0))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def cell_stain(pattern: str, rng: np.random.Generator, style: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """One nucleus of ``pattern`` without background or noise, on the crop `generate_cell` draws: its stain in
    grey levels (float), its mask (bool) and its brightness (the level of its brightest structures)."""
    if pattern not in _RENDER:
        raise Hep2Error(f"unknown synthetic pattern {pattern!r}: expected one of {', '.join(PATTERNS)}")
    geo = _geometry(rng, style)
    stain = np.clip(_RENDER[pattern](geo, rng, style), 0.0, None) * geo["mask"]
    # out-of-focus glow around the nucleus (cytoplasm / neighbouring light)
    if style["haze"] > 0:
        stain += style["haze"] * ndi.gaussian_filter(geo["mask"], 4.0) * (1.0 - geo["mask"])
    blur = style["blur"] * float(np.exp(rng.normal(0.0, 0.12)))
    stain = ndi.gaussian_filter(stain, blur, mode="constant")
    peak = style["peak"] * float(np.exp(rng.normal(0.0, 0.15)))  # cell-to-cell brightness
    ref = np.percentile(stain[geo["mask"] > 0.5], 99.5) if (geo["mask"] > 0.5).any() else 1.0
    return peak * stain / max(ref, 1e-6), geo["mask"] > 0.5, peak


# --------------------------------------------------------------------------------------------
# a whole set on disk
# --------------------------------------------------------------------------------------------


def _whole(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_args(out_dir: Path, per_class, specimens, seed, classes) -> list[str]:
    classes = [classes] if isinstance(classes, str) else list(classes)
    if not classes:
        raise Hep2Error("make_synthetic needs at least one class")
    bad = [c for c in classes if c not in PATTERNS]
    if bad:
        raise Hep2Error(
            f"unknown synthetic class(es) {', '.join(map(repr, bad))}: expected a subset of {', '.join(PATTERNS)}"
        )
    if len(set(classes)) != len(classes):
        raise Hep2Error(f"duplicate class in classes={classes!r}: list each class once")
    if not _whole(per_class) or per_class < 1:
        raise Hep2Error(f"per_class={per_class!r}: need a whole number >= 1 of cells per class")
    if not _whole(specimens) or specimens < len(classes):
        raise Hep2Error(
            f"specimens={specimens!r} is fewer than the {len(classes)} classes (or not a "
            f"whole number): each specimen has one pattern, so use specimens >= {len(classes)}"
        )
    if not _whole(seed) or seed < 0:
        raise Hep2Error(f"seed={seed!r}: need a whole number >= 0")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise Hep2Error(
            f"output folder {out_dir} already exists and is not empty: choose a new folder or delete it first"
        )
    return classes


def make_synthetic(out_dir, per_class: int = 100, specimens: int = 20, seed: int = 0, classes=PATTERNS) -> Path:
    """Write a synthetic HEp-2 set in the folder layout and return its path.

    Layout: ``out_dir/<class>/<specimen>_<NNNN>.png`` (8-bit grayscale) and
    ``out_dir/specimens.csv`` with columns ``path,specimen,intensity`` (path relative to
    ``out_dir`` with forward slashes). Specimens are named ``s01``, ``s02``, ... (at least two
    digits); the i-th (0-based) gets class ``classes[i % len(classes)]``, and the
    ``per_class`` cells of a class are spread evenly over its specimens (``NNNN`` numbers
    the cells of a specimen from 0001). If ``per_class`` is smaller than a class's number of
    specimens, some specimens get no cells and are absent from the CSV.

    The set is written into a hidden temporary folder beside ``out_dir`` and renamed into
    place at the end, so an interrupted run never leaves a complete-looking ``out_dir``.
    ``out_dir`` may not exist, or be empty. Same arguments -> byte-identical files.
    """
    out_dir = Path(out_dir)
    classes = _check_args(out_dir, per_class, specimens, seed, classes)
    seed = int(seed)
    per_class, specimens, n_cls = int(per_class), int(specimens), len(classes)
    width = max(2, len(str(specimens)))
    names = [f"s{i + 1:0{width}d}" for i in range(specimens)]

    # stateless seeding: specimen i's style and its k-th cell each get their own stream
    styles = [specimen_style(np.random.default_rng([_SALT, seed, i, 0])) for i in range(specimens)]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        rows = []
        for ci, cls in enumerate(classes):
            (tmp / cls).mkdir()
            mine = [i for i in range(specimens) if i % n_cls == ci]
            counts = [per_class // len(mine) + (1 if j < per_class % len(mine) else 0) for j in range(len(mine))]
            for i, count in zip(mine, counts):
                for k in range(count):
                    rng = np.random.default_rng([_SALT, seed, i, 1, k])
                    img = generate_cell(cls, rng, styles[i])
                    rel = f"{cls}/{names[i]}_{k + 1:04d}.png"
                    (tmp / rel).write_bytes(png_bytes(img))
                    rows.append((rel, names[i], styles[i]["intensity"]))
        with open(tmp / "specimens.csv", "w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh, lineterminator="\n")
            wr.writerow(["path", "specimen", "intensity"])
            wr.writerows(rows)
        os.chmod(tmp, 0o777 & ~_umask())
        if out_dir.exists():  # empty (checked above); rename cannot replace it everywhere
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------------------------
# whole fields
# --------------------------------------------------------------------------------------------

FIELD_PATTERNS = PATTERNS + ("negative",)


def make_field(
    pattern: str,
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = (1040, 1388),
    cells: int = 70,
    touching: float = 0.5,
    mitotic: int = 3,
    debris: int = 12,
    bit_depth: int = 8,
    scale_bar: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """A whole field of one pattern, as a microscope writes it: ``cells`` nuclei of one specimen, a share
    ``touching`` of them placed against a neighbour, ``mitotic`` condensed bright mitotic-like figures, ``debris``
    small bright specks, an uneven background, noise, a burned-in scale bar and its label, 8 or 16 bit.
    ``negative``: the nuclei barely above the background.

    Returns the image (uint8 or uint16), its true label image (int32: each nucleus and mitotic figure; debris
    and the scale bar are 0) and each label's kind ('interphase' or 'mitotic')."""
    if pattern not in FIELD_PATTERNS:
        raise Hep2Error(f"unknown field pattern {pattern!r}: expected one of {', '.join(FIELD_PATTERNS)}")
    if bit_depth not in (8, 16):
        raise Hep2Error(f"bit_depth={bit_depth!r}: a field is 8 or 16 bit")
    h, w = shape
    style = specimen_style(rng) | {"haze": 0.0}
    yy, xx = np.mgrid[0:h, 0:w]
    uneven = (
        1.0 + 0.4 * (xx / w) + 0.3 * np.exp(-(((yy - h * 0.3) / (0.5 * h)) ** 2 + ((xx - w * 0.7) / (0.5 * w)) ** 2))
    )
    base = 2.0 + style["background"] * style["peak"] * 3 * uneven
    if pattern == "negative":  # nuclei at most half the background's level above it
        style["peak"] = float(rng.uniform(0.3, 0.5) * base.mean())
    signal = np.zeros(shape)
    labels = np.zeros(shape, np.int32)
    kinds: dict[int, str] = {}

    def place(stain, mask, kind, near=None):
        """Put a nucleus on the field; its centre (the mean of its labelled pixels), or None where it does not fit."""
        mh, mw = mask.shape
        if near is not None:  # against a placed nucleus: centre at about the sum of the two radii
            (cy, cx), r = near
            ang = rng.uniform(0, 2 * np.pi)
            d = r + 0.45 * max(mh, mw)
            y0, x0 = int(cy + d * np.sin(ang) - mh / 2), int(cx + d * np.cos(ang) - mw / 2)
        else:
            y0, x0 = int(rng.integers(-mh // 3, h - 2 * mh // 3)), int(rng.integers(-mw // 3, w - 2 * mw // 3))
        ys, xs = slice(max(y0, 0), min(y0 + mh, h)), slice(max(x0, 0), min(x0 + mw, w))
        if ys.stop - ys.start < mh // 2 or xs.stop - xs.start < mw // 2:  # mostly outside the field
            return None
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        m = mask[sub]
        if not m.any() or m.sum() < 0.6 * mask.sum() or (labels[ys, xs][m] > 0).mean() > 0.02:
            return None
        signal[ys, xs] += stain[sub]
        k = len(kinds) + 1
        labels[ys, xs][m & (labels[ys, xs] == 0)] = k
        kinds[k] = kind
        yy, xx = np.nonzero(labels[ys, xs] == k)  # within its box: the whole field holds no other pixel of k
        return yy.mean() + ys.start, xx.mean() + xs.start

    render = "homogeneous" if pattern == "negative" else pattern
    centres = []
    for _ in range(cells * 20):
        if len(centres) >= cells:
            break
        stain, mask, _ = cell_stain(render, rng, style)
        near = centres[int(rng.integers(len(centres)))] if centres and rng.random() < touching else None
        centre = place(stain, mask, "interphase", near)
        if centre is not None:
            centres.append((centre, 0.5 * max(mask.shape)))
    for _ in range(mitotic * 20):
        if sum(v == "mitotic" for v in kinds.values()) >= mitotic:
            break
        small = style | {"size": style["size"] * 0.55, "aspect": 1.8, "peak": style["peak"] * 2.5}
        stain, mask, _ = cell_stain("homogeneous", rng, small)
        place(stain, mask, "mitotic")
    for _ in range(debris):  # specks: bright, a few px, not cells
        y, x, r = int(rng.integers(4, h - 4)), int(rng.integers(4, w - 4)), rng.uniform(1.0, 2.5)
        yy, xx = np.ogrid[-4:5, -4:5]
        signal[y - 4 : y + 5, x - 4 : x + 5] += style["peak"] * 1.5 * np.exp(-(yy**2 + xx**2) / (2 * r**2))
    img = base + signal
    img += rng.standard_normal(shape) * np.sqrt((style["noise"] * style["peak"]) ** 2 + style["shot"] * img)
    img = np.clip(np.round(img), 0, 255)
    if bit_depth == 16:  # the same light on a 16-bit sensor: finer steps
        img = img * 257 + rng.integers(0, 257, shape) * (img > 0)
    if scale_bar:  # a flat bar and its label strokes, top left, as microscopes burn them in
        level = round(min(0.62 * float(np.percentile(img, 99.9)), 0.9 * img.max()))
        img[h // 30 : h // 30 + 20, w // 40 : w // 40 + 200] = level
        for i in range(4):
            img[h // 30 - 22 : h // 30 - 6, w // 40 + 60 + 18 * i : w // 40 + 63 + 18 * i] = level
    return img.astype(np.uint16 if bit_depth == 16 else np.uint8), labels, kinds


def make_synthetic_fields(out_dir, per_pattern: int = 2, seed: int = 0, patterns=FIELD_PATTERNS, **field_kw) -> Path:
    """Write whole synthetic fields: ``out_dir/<pattern>-<n>.png`` (every other one 16 bit), its true label image
    ``<pattern>-<n>_mask.png`` (16-bit PNG, 0 background, a value a nucleus) and ``fields.csv`` (field, pattern,
    bit_depth, nuclei, mitotic). ``out_dir`` may not exist, or be empty. Same arguments -> identical files."""
    out_dir = Path(out_dir)
    known = [p for p in patterns if p != "negative"]
    _check_args(out_dir, per_pattern, max(len(known), 1), seed, known or list(PATTERNS))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for pi, pattern in enumerate(patterns):
        for n in range(int(per_pattern)):
            depth = 16 if (pi * int(per_pattern) + n) % 2 else 8
            img, labels, kinds = make_field(
                pattern, np.random.default_rng([_SALT, int(seed), 2, pi, n]), bit_depth=depth, **field_kw
            )
            name = f"{pattern}-{n + 1}"
            (out_dir / f"{name}.png").write_bytes(png_bytes(img))
            (out_dir / f"{name}_mask.png").write_bytes(png_bytes(labels.astype(np.uint16)))
            mitotic = sum(v == "mitotic" for v in kinds.values())
            rows.append((f"{name}.png", pattern, depth, len(kinds) - mitotic, mitotic))
    with open(out_dir / "fields.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["field", "pattern", "bit_depth", "nuclei", "mitotic"])
        wr.writerows(rows)
    return out_dir


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


__all__ = [
    "FIELD_PATTERNS",
    "PATTERNS",
    "cell_stain",
    "generate_cell",
    "make_field",
    "make_synthetic",
    "make_synthetic_fields",
    "specimen_style",
]
