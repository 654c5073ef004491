"""`hep2 data summary`: counts per split and class, image sizes, intensities, problems."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import Hep2Error
from .cellset import CellSet, file_digest
from .images import read_cell, read_mask

FEW = 5  # cells in a class: fewer cannot fill the default cv folds (the presets' cv_folds)


def colour_share(arr: np.ndarray) -> np.ndarray | None:
    """How a colour image's signal (``read_image(path, "rgb")``) splits over R, G and B; None for a grey one
    (stored as RGB or not)."""
    if arr.ndim != 3 or np.ptp(arr, axis=0).max() == 0:
        return None
    return arr.reshape(3, -1).sum(1) / max(float(arr.sum()), 1e-12)


def colour_problem(shares: list, sample: str = "") -> str:
    """The problem line for colour images with these signal shares (``colour_share`` of each)."""
    share = np.mean(shares, axis=0)
    return (
        f"{len(shares)} colour images{sample}: their signal is red {share[0]:.2f}, green {share[1]:.2f}, blue "
        f"{share[2]:.2f}; hep2 reads a colour image's grey as the mean of the three (setting channel)"
        + (
            ": where one channel holds the stain (FITC: green) and another a counterstain or a nuclear dye, train "
            "with --set channel=green (or the stain's); hep2 predict and the web page then read that channel, as "
            "the model says"
            if mixed(share)
            else ""
        )
    )


def mixed(share) -> bool:
    """A second channel with a tenth of the signal or more: the mean of R, G, B mixes two stains."""
    return bool(np.sort(share)[-2] >= 0.1)


def summarize(cells: CellSet, *, skip_bad: bool = False) -> dict:
    """Decode every image once (to find corrupt files and sizes) and count what the set holds."""
    sizes, bad, colour = [], [], []
    for c in cells.cells:
        try:
            arr = read_cell(c.path, "rgb")
            sizes.append(arr.shape[-2:])
            if c.mask is not None:  # as `hep2 run` reads it
                read_mask(c.mask, arr.shape[-2:], c.path)
            share = colour_share(arr)
            if share is not None:
                colour.append(share)
        except Hep2Error as e:
            if not skip_bad:
                raise
            bad.append((str(c.path), str(e)))
    if bad:
        kept = cells.drop(p for p, _ in bad)
        kept.skipped = list(cells.skipped) + [r for _, r in bad]
        cells = kept
    if len(cells) == 0:
        raise Hep2Error(f"dataset {cells.name} has no readable image left")
    splits = {}
    for name, idx in cells.subsets.items():
        counts = Counter(cells.cells[i].label for i in idx)
        splits[name] = {"total": int(len(idx)), "classes": {c: int(counts.get(c, 0)) for c in cells.classes}}
    problems = list(cells.problems)
    digests = Counter(file_digest(c.path) for c in cells.cells)
    dups = sum(n - 1 for n in digests.values() if n > 1)
    if dups:
        problems.append(f"{dups} images are byte-identical copies of another image in the set")
    for name, s in splits.items():
        empty = [c for c, n in s["classes"].items() if n == 0]
        if empty and s["total"]:
            problems.append(f"split {name} has no cells of class {', '.join(empty)}")
    total = Counter(c.label for c in cells.cells if c.label is not None)
    few = [f"{c} ({total[c]})" for c in cells.classes if total[c] < FEW]
    if few:
        problems.append(
            f"{'class' if len(few) == 1 else 'classes'} {', '.join(few)} {'has' if len(few) == 1 else 'have'} "
            f"fewer than {FEW} cells, too few to train on or to score (a misspelt class name makes a class "
            "of its own)"
        )
    if colour:
        problems.append(colour_problem(colour))
    small = sum(1 for h, w in sizes if min(h, w) < 16)
    if small:
        problems.append(f"{small} images are smaller than 16 px on a side")
    h = np.array([s[0] for s in sizes])
    w = np.array([s[1] for s in sizes])
    intensity = Counter(c.intensity or "unknown" for c in cells.cells)
    specimens = {c.specimen for c in cells.cells if c.specimen is not None}
    return {
        "dataset": cells.name,
        "fingerprint": cells.fingerprint(),
        "classes": list(cells.classes),
        "splits": splits,
        "image_size": {
            "min": [int(w.min()), int(h.min())],
            "max": [int(w.max()), int(h.max())],
            "median": [int(np.median(w)), int(np.median(h))],
        },
        "intensity": {k: int(intensity.get(k, 0)) for k in ("positive", "intermediate", "unknown")},
        "specimens": len(specimens) if specimens else None,
        "problems": problems,
        "skipped": {"count": len(cells.skipped), "files": list(cells.skipped)},
    }


def format_summary(s: dict) -> str:
    """The summary as a plain-text table."""
    classes = s["classes"]
    width = max([len("split")] + [len(n) for n in s["splits"]])
    cw = [max(len(c), 5) for c in classes]
    lines = [f"dataset: {s['dataset']}  (fingerprint {s['fingerprint']})", ""]
    lines.append(f"{'split':<{width}}  {'total':>6}  " + "  ".join(f"{c:>{w}}" for c, w in zip(classes, cw)))
    for name, sp in s["splits"].items():
        lines.append(
            f"{name:<{width}}  {sp['total']:>6}  " + "  ".join(f"{sp['classes'][c]:>{w}}" for c, w in zip(classes, cw))
        )
    size = s["image_size"]
    lines += [
        "",
        f"image size (w x h): min {size['min'][0]}x{size['min'][1]}, median "
        f"{size['median'][0]}x{size['median'][1]}, max {size['max'][0]}x{size['max'][1]}",
        "intensity: " + ", ".join(f"{k} {v}" for k, v in s["intensity"].items()),
        f"specimens: {s['specimens'] if s['specimens'] is not None else 'not given'}",
    ]
    lines.append("problems: " + ("none" if not s["problems"] else ""))
    lines += [f"  - {p}" for p in s["problems"]]
    if s["skipped"]["count"]:
        lines.append(f"skipped (--skip-bad): {s['skipped']['count']}")
        lines += [f"  - {f}" for f in s["skipped"]["files"]]
    return "\n".join(lines)


__all__ = ["FEW", "colour_problem", "colour_share", "format_summary", "mixed", "summarize"]
