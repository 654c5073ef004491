"""`hep2 demo`: the paper's method beside the project's recommended method, on the built-in synthetic cells.

Both are evaluated on the same specimen-grouped 5-fold splits (no specimen is on both sides of a split) at the
``tiny`` size, which computes in fp32 on every machine so that the figures do not depend on the CPU's bf16:

- the paper's method: one autoencoder, its Conv 5 code, the 250-50 classifier (Table I's design scaled down);
- the recommended method: the autoencoder read as a bag of words of its Conv 3 activations with logistic
  regression (the ``words`` preset's reading), averaged with the bag of DAISY words (``bow``), as
  ``hep2 ensemble`` averages them; each cell is classified on its own (inductive).

The folder holds one run folder each (``paper/``, ``words/``, ``bow/``, ``recommended/``) and ``comparison.md``,
which opens with the two figures. Then the field path (`demo_fields`): three synthetic whole fields (homogeneous,
centromere, negative) in ``fields/images/``, their cells found and classified by the recommended model and each
field called, with ``fields/calls.csv`` and an overlay of each in ``fields/overlays/``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .. import distributed as dd
from ..presets import get_preset
from .compare import comparison_row, write_comparison
from .ensemble import make_ensemble
from .runfolder import prepare_out
from .runner import run

PROTOCOL = "grouped"
# the cpu preset's variance-reducing choice: 3 autoencoders (seeds), each with 2 classifiers, probabilities
# averaged; with one of each, the figure moved by 0.04 between this CPU's AVX-512 and AVX2 kernels
PAPER = {"ae_ensemble": 3, "mlp_ensemble": 2}
# the words reading at the tiny size: 128 words (the tiny autoencoder's Conv 3 has 8 x 8 positions a view)
WORDS = {"features": "words", "head": "logistic", "tta": True, "ae_words": 128}
PAPER_TEXT = "the paper's method: its autoencoder, Conv 5 code and 250-50 classifier (3 x 2, averaged)"
RECOMMENDED_TEXT = "recommended: the autoencoder's words (logistic regression) and bow, averaged"


def demo(out, *, per_class: int = 60, resume: bool = False, verbose: bool = True) -> dict:
    """Run the paper's method and the recommended method on ``synthetic:per_class`` into ``out``.

    Returns the comparison (``comparison.json``): a row per run, the paper's method first and the recommended
    method last, each with its accuracy and mean class accuracy (mean and std over the folds).
    """
    dataset, out = f"synthetic:{per_class}", Path(out)
    prepare_out(out, resume, kind="demo")
    tiny = get_preset("tiny")
    plan = [
        ("paper", "dcae-mlp", tiny.override(PAPER), PAPER_TEXT),
        ("words", "dcae-mlp", tiny.override(WORDS), "the autoencoder read as a bag of words, logistic regression"),
        ("bow", "bow", tiny, "a bag of DAISY words, logistic regression"),
    ]
    rows, t0 = {}, time.perf_counter()
    for folder, method, cfg, text in plan:
        done = out / folder / "metrics.json"
        if resume and done.exists():
            metrics = json.loads(done.read_text())
        else:
            metrics = run(
                dataset,
                protocol=PROTOCOL,
                cfg=cfg,
                out=out / folder,
                subset="all",
                resume=resume,
                verbose=verbose,
                method=method,
            )
        rows[folder] = comparison_row(folder, text, None, metrics, metrics["seconds"]["total"])
    if resume and (out / "recommended").exists() and dd.is_main():
        shutil.rmtree(out / "recommended")  # rebuilt in a second from its members
    metrics = make_ensemble([out / "words", out / "bow"], out / "recommended", verbose=verbose)
    seconds = rows["words"]["seconds"] + rows["bow"]["seconds"] + metrics["seconds"]["total"]
    rows["recommended"] = comparison_row("recommended", RECOMMENDED_TEXT, None, metrics, seconds)
    result = {
        "protocol": PROTOCOL,
        "protocol_description": metrics["protocol_description"],
        "dataset": dataset,
        "preset": tiny.name,
        "rows": [rows[k] for k in ("paper", "words", "bow", "recommended")],
        "seconds": time.perf_counter() - t0,
    }
    if dd.is_main():
        write_comparison(out, result)
        result["fields"] = demo_fields(out / "fields", out / "recommended")
    return result


FIELD_DEMO = {"patterns": ("homogeneous", "centromere", "negative"), "shape": (520, 700), "cells": 24, "debris": 4}


def demo_fields(out, model) -> list[dict]:
    """Three synthetic whole fields called by ``model``: their calls (`hep2.pipeline.fields.call_fields`), also in
    ``out/calls.csv``, and an overlay of each field in ``out/overlays/``."""
    from ..data.synthetic import make_synthetic_fields
    from .fields import call_fields, write_overlays, write_rows
    from .predict import Predictor

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # made again in seconds
    images = make_synthetic_fields(out / "images", per_pattern=1, seed=0, **FIELD_DEMO)
    pred = Predictor(model)
    _, calls, _, fields, _ = call_fields(pred, sorted(p for p in images.glob("*.png") if "_mask" not in p.name))
    write_overlays(out / "overlays", fields, list(pred.classes))
    columns = ["field", "call", "icap", "share", "cells", "signal_index", "mixed", "note"]
    write_rows(out / "calls.csv", calls, columns)
    return [{k: c.get(k) for k in columns} for c in calls]


def demo_lines(result: dict) -> list[str]:
    """The demo's two figures, as ``hep2 demo`` prints them."""
    first, last = result["rows"][0], result["rows"][-1]
    return [
        f"{text}: accuracy {r['accuracy']['mean']:.4f} ± {r['accuracy']['std']:.4f}, MCA {r['mca']['mean']:.4f}"
        for text, r in ((PAPER_TEXT, first), (RECOMMENDED_TEXT, last))
    ]


__all__ = ["demo", "demo_fields", "demo_lines"]
