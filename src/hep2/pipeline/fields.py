"""Whole fields to cells, and to a well's call: `hep2 segment` and the field path of `hep2 predict`.

- `segment_fields` cuts every cell of each field (`hep2.data.segmentation.segment_field`) into the folder layout
  ``OUT/cells/<pattern or unlabelled>/<field>_<cell>.png``, its mask ``..._mask.png`` beside it and
  ``OUT/cells/specimens.csv`` (each cell's well), and writes ``OUT/cells.csv`` (a row per object found, flagged or
  not), ``OUT/fields.csv`` (a row per field) and ``OUT/overlays/<field>.png``. Fields labelled by well (``label``
  or a CSV of field -> pattern) put their cells in class folders, so that ``hep2 run folder:OUT/cells`` trains on
  a lab's own fields.
- `call_fields` classifies each field's unflagged cells with a trained model and calls each field and each
  well (a folder of fields):
  - **positive / negative**: the field's signal index (`Field.signal_index`: the cells' median grey level over
    the background, in background units) against ``negative_below`` (default 1.0: cells less than twice as
    bright as the background are negative);
  - **the pattern**: the dominant pattern of the cells (`hep2.pipeline.evaluation.batch_summary`) with its ICAP
    code and the share of cells that show it; **mixed** where a second pattern holds at least ``mixed_share``
    (0.3) of the cells;
  - **not a pattern this model knows** where the cells' mean top probability is under ``unknown_below`` (0.5),
    or where the field's objects are smaller than nuclei (`Field.nuclei`: only dots were found, as where bright
    nuclear dots sit on dim nuclei; a model of nuclear patterns has nothing to read);
- `negative_threshold`: the ``negative_below`` that a lab's own labelled negative and positive fields call best
  (`hep2 segment --labels` prints it). The signal index depends on the microscope's exposure: on I3A's own crops
  (positive and intermediate wells only) the cells' mean over the median outside their masks, in those units, is
  0.49 at the median (docs/fields.md), far under the default.
"""

from __future__ import annotations

import csv
import glob
import json
import time
from pathlib import Path

import numpy as np

from ..data.cellset import normalise_class
from ..data.images import IMAGE_EXTENSIONS, atomic_write_bytes, png_bytes
from ..data.patterns import icap, with_icap
from ..data.segmentation import Field, cell_crop, field_grey, object_scores, segment_field
from ..errors import Hep2Error
from .evaluation import batch_summary
from .predict import expand_inputs
from .runfolder import write_csv

FIELD_SIDE = 400  # hep2 predict reads an image at least this large on both sides as a field (--fields forces it)
NEGATIVE_BELOW, UNKNOWN_BELOW, MIXED_SHARE = 1.0, 0.5, 0.3  # the call's thresholds (module docstring)
UNKNOWN = "not a pattern this model knows"


def is_field(path) -> bool:
    """True for an image at least `FIELD_SIDE` px on both sides (read from its header, not decoded)."""
    from PIL import Image

    try:
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                h, w = tif.pages[0].imagelength, tif.pages[0].imagewidth
        else:
            with Image.open(path) as im:
                w, h = im.size
    except Exception:  # unreadable: the reader names the problem when the file is read
        return False
    return min(h, w) >= FIELD_SIDE


def field_names(paths: list[Path]) -> list[str]:
    """A unique name for each field: its file stem, with its folder's name before it where stems repeat."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def well_of(path: Path, inputs, name: str) -> str:
    """A field's well: its folder, where it sits in a subfolder of a folder given (``plate/well_A/field1.png``),
    else the field itself."""
    for item in inputs:
        d = Path(item)
        if d.is_dir() and path.parent != d and d in path.parents:
            return path.parent.name
    return name


def read_field_labels(path) -> dict[str, str]:
    """A CSV of field -> pattern (columns ``field,pattern``; the field by file name or stem)."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except OSError as e:
        raise Hep2Error(f"cannot read --labels {path}: {e.strerror or e}") from None
    if not rows or [h.strip().lower() for h in rows[0][:2]] != ["field", "pattern"]:
        raise Hep2Error(f"--labels {path}: the first line must be the header field,pattern")
    out = {}
    for n, row in enumerate(rows[1:], 2):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise Hep2Error(f"--labels {path}, line {n}: expected field,pattern, got {','.join(row)!r}")
        out[Path(row[0].strip()).stem] = normalise_class(row[1], where=f" in {path}, line {n}")
    return out


def _as_stored(grey: np.ndarray, bits16: bool) -> np.ndarray:
    return np.clip(np.round(grey), 0, 65535 if bits16 else 255).astype(np.uint16 if bits16 else np.uint8)


COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]  # fmt: skip


def overlay(fld: Field, calls: dict[int, str] | None = None, classes: list[str] | None = None) -> np.ndarray:
    """The field (grey, contrast stretched) with each object's outline: coloured by its pattern where ``calls``
    (cell -> pattern) give one, white for an unflagged cell otherwise, dark red for a flagged object; burned-in
    annotations tinted blue."""
    from skimage.segmentation import find_boundaries

    g = fld.grey.astype(np.float32)
    lo, hi = np.percentile(g, 1), np.percentile(g, 99.8)
    v = np.clip((g - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = (np.stack([v, v, v], -1) * 200).astype(np.uint8)
    edges = find_boundaries(fld.labels, mode="inner")
    colour = np.zeros((int(fld.labels.max()) + 1, 3), np.uint8)
    for c in fld.cells:
        if c["flags"]:
            colour[c["cell"]] = (120, 0, 0)
        elif calls and c["cell"] in calls and classes and calls[c["cell"]] in classes:
            colour[c["cell"]] = COLOURS[classes.index(calls[c["cell"]]) % len(COLOURS)]
        else:
            colour[c["cell"]] = (255, 255, 255)
    rgb[edges] = colour[fld.labels[edges]]
    if fld.annotation is not None:
        rgb[fld.annotation, 2] = 255
    return rgb


def write_overlays(folder, fields: dict, classes: list[str] | None = None) -> None:
    """``folder/<field>.png``: each field's `overlay`, from ``fields`` (name -> (Field, its cells' calls or None))."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (fld, calls) in fields.items():
        atomic_write_bytes(folder / f"{name}.png", png_bytes(overlay(fld, calls, classes)))


def segment_fields(
    inputs,
    out,
    *,
    label: str | None = None,
    labels_csv=None,
    channel: str = "auto",
    skip_bad: bool = False,
    progress: bool = True,
    truth: bool = False,
) -> dict:
    """Cut the cells of every field of ``inputs`` into ``out`` (module docstring). Returns the summary
    (``fields``: a row per field; ``skipped``: the files left out, with ``skip_bad``; with ``truth``,
    ``segmentation``: `measure_field` of each field that has masks beside it, and pooled, also written to
    ``segmentation.json``). A bad field stops the work (without ``skip_bad``) after the fields before it are
    written in full."""
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Hep2Error(f"--out {out} exists and is not an empty folder: choose a new folder")
    if label is not None and labels_csv is not None:
        raise Hep2Error("give --label (one pattern for every field) or --labels (a CSV of field -> pattern), not both")
    skipped: list[str] = [] if skip_bad else None
    paths = expand_inputs(inputs, skipped)
    if not paths:
        raise Hep2Error("no field images given")
    names = field_names(paths)
    table = read_field_labels(labels_csv) if labels_csv is not None else {}
    fixed = normalise_class(label, where=" (--label)") if label is not None else None
    if table:
        missing = [p.name for p in paths if p.stem not in table]
        if missing:
            raise Hep2Error(
                f"--labels {labels_csv} gives no pattern for {len(missing)} fields (first: {missing[0]}): add "
                "them, or segment them apart"
            )
    out.mkdir(parents=True, exist_ok=True)
    cell_rows, field_rows, specimen_rows, measured = [], [], [], {}
    skipped = skipped if skipped is not None else []
    try:
        for path, name in tqdm(list(zip(paths, names)), desc="fields", unit="field", disable=not progress):
            t0 = time.perf_counter()
            try:
                grey = field_grey(path, channel)
                fld = segment_field(grey)
            except Hep2Error as e:
                if not skip_bad:
                    raise Hep2Error(f"{e} (the {len(field_rows)} fields before it are written in {out})") from None
                skipped.append(f"{path}: {e}")
                continue
            pattern = fixed or table.get(path.stem)
            folder = out / "cells" / (pattern or "unlabelled")
            folder.mkdir(parents=True, exist_ok=True)
            bits16 = float(grey.max()) > 255
            for c in fld.cells:
                crop = ""
                if not c["flags"]:
                    g, m = cell_crop(fld, c)
                    crop = f"cells/{folder.name}/{name}_{c['cell']:04d}.png"
                    atomic_write_bytes(out / crop, png_bytes(_as_stored(g, bits16)))
                    atomic_write_bytes(out / crop.replace(".png", "_mask.png"), png_bytes(m.astype(np.uint8) * 255))
                    specimen_rows.append((crop, well_of(path, inputs, name)))
                cell_rows.append(_cell_row(name, c, crop))
            write_overlays(out / "overlays", {name: (fld, None)})
            truth_file = find_truth(path) if truth else None
            if truth_file is not None:
                measured[name] = measure_field(fld, truth_file)
            field_rows.append(
                {
                    "field": name,
                    "path": str(path),
                    "pattern": pattern or "",
                    "objects": len(fld.cells),
                    "cells": len(fld.kept),
                    "flagged": len(fld.cells) - len(fld.kept),
                    "nucleus_diameter_px": round(2 * float(np.sqrt(fld.typical_area / np.pi)), 1),
                    "signal_index": round(fld.signal_index(), 3),
                    "seconds": round(time.perf_counter() - t0, 2),
                    "notes": "; ".join(fld.notes),
                }
            )
    finally:
        write_rows(out / "cells.csv", cell_rows, CELL_COLUMNS)
        write_rows(out / "fields.csv", field_rows, FIELD_COLUMNS)
        if specimen_rows:
            rows = [{"path": path[len("cells/") :], "specimen": well} for path, well in specimen_rows]
            write_rows(out / "cells" / "specimens.csv", rows, ["path", "specimen"])
    summary = {"fields": field_rows, "cells": len(specimen_rows), "skipped": skipped, "out": str(out)}
    known = [r for r in field_rows if r["pattern"]]
    if {r["pattern"] == "negative" for r in known} == {True, False}:  # both kinds labelled: the lab's own threshold
        summary["negative_below"] = negative_threshold(
            [r["signal_index"] for r in known if r["pattern"] == "negative"],
            [r["signal_index"] for r in known if r["pattern"] != "negative"],
        )
    if truth:
        if not measured:
            raise Hep2Error(
                "--truth: no field has its masks beside it (NAME_mask.png, a label image, or NAME_Edges.png, drawn "
                "outlines); the cells are written in " + str(out)
            )
        summary["segmentation"] = {"fields": measured, "pooled": pool_matches(measured.values())}
        atomic_write_bytes(out / "segmentation.json", json.dumps(summary["segmentation"], indent=2).encode())
    return summary


def find_truth(path: Path) -> Path | None:
    """The true masks of a field, beside it: ``NAME_mask.EXT`` (a label image, or a binary mask whose connected
    regions are the nuclei) or ``NAME_Edges.EXT`` (drawn outlines)."""
    for suffix in ("_mask", "_Mask", "_Edges", "_edges"):
        for f in path.parent.glob(glob.escape(path.stem + suffix) + ".*"):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                return f
    return None


def measure_field(fld: Field, truth_file: Path) -> dict:
    """`match_objects` of a field's objects (without those flagged debris or annotation: not nuclei) against its
    true masks (``find_truth``; regions under 20 px left out)."""
    from ..data.images import read_image
    from ..data.segmentation import mask_to_labels, match_objects, outlines_to_labels

    raw = read_image(truth_file, "rgb")
    if raw.shape[-2:] != fld.labels.shape:
        raise Hep2Error(f"{truth_file} is {raw.shape[-1]}x{raw.shape[-2]} but its field is "
                        f"{fld.labels.shape[1]}x{fld.labels.shape[0]}: give the field's own masks")  # fmt: skip
    if "edges" in truth_file.stem.lower():
        true = outlines_to_labels(raw.max(0) if raw.ndim == 3 else raw)
    else:
        true = mask_to_labels(raw)
    pred = fld.labels.copy()
    pred[np.isin(pred, [c["cell"] for c in fld.cells if {"debris", "annotation"} & set(c["flags"])])] = 0
    return match_objects(pred, true)


def pool_matches(results) -> dict:
    """Object counts of several `match_objects` results added up, and their precision, recall and F1."""
    results = list(results)
    tp, n_pred, n_true = (sum(r[k] for r in results) for k in ("tp", "predicted", "true"))
    return {
        **object_scores(tp, n_pred, n_true),
        "mean_iou": float(np.average([r["mean_iou"] for r in results], weights=[max(r["tp"], 1e-9) for r in results])),
        "splits": sum(r["splits"] for r in results),
        "merges": sum(r["merges"] for r in results),
    }


CELL_COLUMNS = [
    "field",
    "cell",
    "r0",
    "c0",
    "r1",
    "c1",
    "centroid_r",
    "centroid_c",
    "area",
    "mean",
    "max",
    "flags",
    "crop",
]
FIELD_CALL_COLUMNS = ["field", "path", "seconds", "call", "icap", "positive", "share", "mixed", "confidence", "cells",
                      "signal_index", "note"]  # fmt: skip
FIELD_COLUMNS = ["field", "path", "pattern", "objects", "cells", "flagged", "nucleus_diameter_px", "signal_index",
                 "seconds", "notes"]  # fmt: skip


def _cell_row(name: str, c: dict, crop: str) -> dict:
    r0, c0, r1, c1 = c["bbox"]
    return {
        "field": name,
        "cell": c["cell"],
        "r0": r0,
        "c0": c0,
        "r1": r1,
        "c1": c1,
        "centroid_r": c["centroid"][0],
        "centroid_c": c["centroid"][1],
        "area": c["area"],
        "mean": round(c["mean"], 2),
        "max": round(c["max"], 2),
        "flags": "+".join(c["flags"]),
        "crop": crop,
    }


def write_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    """A CSV of dict rows under ``columns`` (other keys left out, missing ones empty), written atomically."""
    write_csv(path, columns, [[r.get(c, "") for c in columns] for r in rows])


def call_cells(proba: np.ndarray, classes: list[str], signal: float, *, negative_below=NEGATIVE_BELOW,
               unknown_below=UNKNOWN_BELOW, mixed_share=MIXED_SHARE, not_nuclei: str = "") -> dict:  # fmt: skip
    """The call of one field or well from its cells' probabilities (N, C) and its signal index; ``not_nuclei``: why
    the objects are not nuclei (a positive field is then not a pattern this model knows)."""
    out = {"signal_index": round(float(signal), 3), "cells": int(len(proba))}
    if len(proba) == 0 or signal < negative_below:
        why = "no cell found" if len(proba) == 0 else f"signal index {signal:.2f} < {negative_below}"
        return out | {"call": "negative", "icap": icap("negative"), "positive": False, "share": None, "note": why}
    s = batch_summary(proba, classes)
    counts = sorted(s["counts"].items(), key=lambda kv: -kv[1])
    second = counts[1] if len(counts) > 1 and counts[1][1] >= mixed_share * len(proba) else None
    confidence = float(np.asarray(proba).max(1).mean())
    call = s["dominant"] if confidence >= unknown_below and not not_nuclei else UNKNOWN
    unsure = f"the cells' mean top probability {confidence:.2f} < {unknown_below}" if call == UNKNOWN else ""
    note = not_nuclei or unsure
    return out | {
        "call": call,
        "icap": icap(call),
        "positive": True,
        "share": round(s["agreement"], 3),
        "mixed": f"{with_icap(second[0])} in {second[1] / len(proba):.0%} of the cells" if second else "",
        "confidence": round(confidence, 3),
        "counts": s["counts"],
        "note": note,
    }


def negative_threshold(negatives, positives) -> dict:
    """The ``negative_below`` that calls labelled fields best: the signal indices of fields known negative and of
    fields known positive (any pattern) -> the threshold with the fewest fields on the wrong side, halfway
    between the two indices it falls between (of equally good ones, the widest gap), and how it splits them."""
    neg, pos = sorted(float(v) for v in negatives), sorted(float(v) for v in positives)
    if not neg or not pos:
        raise Hep2Error("a threshold needs fields labelled negative and fields labelled with a pattern")
    values = sorted(set(neg + pos))
    best = None
    for lo, hi in zip(values, values[1:]):
        t = (lo + hi) / 2
        wrong = sum(v >= t for v in neg) + sum(v < t for v in pos)
        if best is None or (wrong, lo - hi) < (best[0], best[1]):
            best = (wrong, lo - hi, t)
    wrong, _, t = best
    return {
        "negative_below": round(t, 3),
        "wrong": wrong,
        "negatives": len(neg),
        "positives": len(pos),
        "highest_negative": neg[-1],
        "lowest_positive": pos[0],
    }


def call_fields(predictor, paths, *, channel: str = "auto", skip_bad: bool = False, progress: bool = False, **th):
    """Segment each field, classify its unflagged cells with ``predictor`` (`hep2.pipeline.predict.Predictor`)
    and call each field and each well (the fields of one folder). Returns (cell rows, field calls, well calls,
    the segmented fields by name, skipped files)."""
    from tqdm import tqdm

    classes = list(predictor.classes)
    names = field_names([Path(p) for p in paths])
    cell_rows, field_calls, fields, skipped, by_well = [], [], {}, [], {}
    for path, name in tqdm(list(zip(paths, names)), desc="fields", unit="field", disable=not progress):
        t0 = time.perf_counter()
        try:
            fld = segment_field(field_grey(path, channel))
        except Hep2Error as e:
            if not skip_bad:
                raise
            skipped.append(f"{path}: {e}")
            continue
        kept = fld.kept
        proba = predictor.predict_crops([cell_crop(fld, c) for c in kept]) if kept else np.zeros((0, len(classes)))
        calls = {c["cell"]: classes[i] for c, i in zip(kept, proba.argmax(1))}
        for c, p in zip(kept, proba):
            row = _cell_row(name, c, "")
            row.pop("crop")
            pattern = calls[c["cell"]]
            cell_rows.append(row | {"pattern": pattern, "icap": icap(pattern)}
                             | {f"p_{k}": round(float(v), 5) for k, v in zip(classes, p)})  # fmt: skip
        signal = fld.signal_index()
        not_nuclei = "" if fld.nuclei else "; ".join(fld.notes) or "no nucleus-sized objects"
        call = call_cells(proba, classes, signal, not_nuclei=not_nuclei, **th)
        field_calls.append({"field": name, "path": str(path), "seconds": round(time.perf_counter() - t0, 2)} | call)
        fields[name] = (fld, calls)
        well = by_well.setdefault(str(Path(path).parent), {"proba": [], "signals": [], "dots": []})
        well["proba"].append(proba)
        well["signals"].append(signal)
        well["dots"].append(not_nuclei)
    well_calls = [
        {"well": w, "fields": len(v["signals"])}
        | call_cells(
            np.concatenate(v["proba"]),
            classes,
            float(np.median(v["signals"])),
            **th,
            not_nuclei="no field of the well has nucleus-sized objects" if all(v["dots"]) else "",
        )
        for w, v in by_well.items()
    ]
    return cell_rows, field_calls, well_calls, fields, skipped


__all__ = [
    "CELL_COLUMNS",
    "FIELD_CALL_COLUMNS",
    "FIELD_SIDE",
    "NEGATIVE_BELOW",
    "UNKNOWN",
    "call_cells",
    "call_fields",
    "negative_threshold",
    "find_truth",
    "measure_field",
    "pool_matches",
    "is_field",
    "overlay",
    "read_field_labels",
    "well_of",
    "write_overlays",
    "write_rows",
    "segment_fields",
]
