"""Whole fields, measured: segmentation against true masks, speed, and field calls against labelled fields.

    python benchmarks/fields.py [--shared ../shared] [--model RUN] [--json FILE]

- Synthetic fields (`hep2 data make-fields`'s generator, 1040x1388, 70 nuclei each, 5 patterns and negative, 8 and
  16 bit): object precision / recall / F1 at IoU 0.5 with every nucleus apart, and with half of them touching a
  neighbour; `segment_field`'s seconds per field (the median).
- ``SHARED/data/fields/uobcs``: the same against the hand-drawn outlines (filled; regions under 20 px left out).
- ``SHARED/data/fields/agh`` with ``--model``: each field's call against its file name's pattern (ACA centromere,
  HOM homogeneous, NUC nucleolar, ZIA speckled, NEG negative; AMA, DOT, FIB: patterns no public cell set holds),
  compared at the depth the model and the label share (a model's fine or coarse speckled is speckled); the seconds
  to call a field.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
AGH = {"ACA": "centromere", "HOM": "homogeneous", "NUC": "nucleolar", "ZIA": "speckled", "NEG": "negative"}
OUTSIDE = ("AMA", "DOT", "FIB")


def synthetic(touching: float, seed: int = 0) -> dict:
    from hep2.data.segmentation import field_grey, segment_field
    from hep2.data.synthetic import make_synthetic_fields
    from hep2.pipeline.fields import measure_field, pool_matches

    with tempfile.TemporaryDirectory() as tmp:
        out = make_synthetic_fields(Path(tmp) / "f", per_pattern=2, seed=seed, touching=touching)
        results, seconds = [], []
        for f in sorted(out.glob("*.png")):
            if f.stem.endswith("_mask"):
                continue
            grey = field_grey(f)
            t = time.perf_counter()
            fld = segment_field(grey)
            seconds.append(time.perf_counter() - t)
            results.append(measure_field(fld, out / f"{f.stem}_mask.png"))
    return {"touching": touching, "fields": len(results), "seconds_median": float(np.median(seconds))} | pool_matches(
        results
    )


def uobcs(root: Path) -> dict:
    from hep2.data.segmentation import field_grey, segment_field
    from hep2.pipeline.fields import find_truth, measure_field, pool_matches

    per = {}
    for f in sorted(root.glob("*.png")):
        if f.stem.endswith("_Edges"):
            continue
        per[f.stem] = measure_field(segment_field(field_grey(f)), find_truth(f))
    return {"fields": per, "pooled": pool_matches(per.values())}


def agh(root: Path, model: str) -> dict:
    from hep2.data.patterns import fold_map
    from hep2.pipeline.fields import UNKNOWN, call_fields
    from hep2.pipeline.predict import Predictor

    pred = Predictor(model)
    paths = sorted(root.glob("*.png"))
    t = time.perf_counter()
    _, calls, _, _, _ = call_fields(pred, paths)
    seconds = (time.perf_counter() - t) / len(paths)
    fold = fold_map(pred.classes, list(AGH.values()))
    rows, known, neg_right, neg_wrong, outside_ok = [], [0, 0], [0, 0], 0, [0, 0]
    for c in calls:
        kind = c["field"].split("-")[0]
        said = "negative" if c["call"] == "negative" else fold.get(c["call"], c["call"])
        rows.append({"field": c["field"], "label": AGH.get(kind, kind), "call": c["call"], "as_label": said}
                    | {k: c.get(k) for k in ("share", "confidence", "signal_index", "cells", "mixed")})  # fmt: skip
        if kind in AGH and kind != "NEG":
            known[0] += said == AGH[kind]
            known[1] += 1
        if kind == "NEG":
            neg_right[0] += said == "negative"
            neg_right[1] += 1
        elif said == "negative":
            neg_wrong += 1
        if kind in OUTSIDE:
            outside_ok[0] += c["call"] in (UNKNOWN, "negative")
            outside_ok[1] += 1
    return {
        "model": model,
        "classes": list(pred.classes),
        "fields": rows,
        "known_patterns_right": known,
        "negative_called_negative": neg_right,
        "others_called_negative": neg_wrong,
        "outside_not_given_a_known_pattern": outside_ok,
        "seconds_per_field": seconds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(HERE.parent.parent / "shared"), help="the folder holding data/fields")
    ap.add_argument("--model", help="a run folder: call the agh fields with it")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    out = {"synthetic": [synthetic(0.0), synthetic(0.5)]}
    for s in out["synthetic"]:
        print(
            f"synthetic fields, touching {s['touching']:.0%}: F1 {s['f1']:.3f} (precision {s['precision']:.3f}, recall "
            f"{s['recall']:.3f}, mean IoU {s['mean_iou']:.3f}, {s['splits']} splits, {s['merges']} merges; "
            f"{s['fields']} fields); segmentation {s['seconds_median']:.2f} s a 1040x1388 field (median)"
        )
    fields = Path(args.shared) / "data" / "fields"
    if (fields / "uobcs").is_dir():
        out["uobcs"] = uobcs(fields / "uobcs")
        p = out["uobcs"]["pooled"]
        print(f"uobcs outlines: F1 {p['f1']:.3f} (precision {p['precision']:.3f}, recall {p['recall']:.3f}, mean IoU "
              f"{p['mean_iou']:.3f}; {p['true']} outlined; {p['splits']} splits, {p['merges']} merges)")  # fmt: skip
        for name, m in out["uobcs"]["fields"].items():
            print(f"  {name}: F1 {m['f1']:.3f} ({m['tp']} of {m['true']} outlined, {m['predicted']} found)")
    else:
        print(f"no {fields / 'uobcs'}: the outlined fields were not measured", file=sys.stderr)
    if args.model and (fields / "agh").is_dir():
        a = out["agh"] = agh(fields / "agh", args.model)
        for r in a["fields"]:
            print(f"  {r['field']:8} label {r['label']:12} call {r['call']:32} share {r['share']} signal "
                  f"{r['signal_index']:.2f} cells {r['cells']}")  # fmt: skip
        print(
            f"agh: known patterns right {a['known_patterns_right'][0]} of {a['known_patterns_right'][1]}; NEG called "
            f"negative {a['negative_called_negative'][0]} of {a['negative_called_negative'][1]}, other fields called "
            f"negative {a['others_called_negative']}; AMA/DOT/FIB without a known pattern "
            f"{a['outside_not_given_a_known_pattern'][0]} of {a['outside_not_given_a_known_pattern'][1]}; "
            f"{a['seconds_per_field']:.2f} s a field"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
