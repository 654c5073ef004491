"""Whole fields: synthetic fields, segmentation and its measurement, hep2 segment, hep2 predict on fields."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from hep2.cli import main
from hep2.data.images import read_image
from hep2.data.segmentation import field_grey, mask_to_labels, match_objects, outlines_to_labels, segment_field
from hep2.data.synthetic import make_field, make_synthetic_fields
from hep2.errors import Hep2Error
from hep2.pipeline.fields import UNKNOWN, call_cells, negative_threshold

SMALL = {"shape": (420, 560), "cells": 16, "mitotic": 1, "debris": 4}


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """One small synthetic field of three patterns (8 bit, then 16 bit, then 8 bit), masks and fields.csv."""
    out = tmp_path_factory.mktemp("fields") / "plate"
    make_synthetic_fields(out, per_pattern=1, patterns=("homogeneous", "centromere", "negative"), **SMALL)
    return out


def test_synthetic_fields_have_true_masks_and_kinds():
    img, labels, kinds = make_field("centromere", np.random.default_rng(1), bit_depth=16, **SMALL)
    assert img.dtype == np.uint16 and img.shape == labels.shape == SMALL["shape"]
    assert set(kinds.values()) == {"interphase", "mitotic"} and labels.max() == len(kinds)
    again, _, _ = make_field("centromere", np.random.default_rng(1), bit_depth=16, **SMALL)
    assert (img == again).all()  # deterministic for a seed
    with pytest.raises(Hep2Error, match="unknown field pattern"):
        make_field("fibrillar", np.random.default_rng(1))


@pytest.mark.parametrize("name", ["homogeneous-1", "centromere-1"])
def test_segmentation_finds_the_nuclei_and_sets_the_scale_bar_aside(fields, name):
    fld = segment_field(field_grey(fields / f"{name}.png"))
    truth = read_image(fields / f"{name}_mask.png").astype(int)
    pred = fld.labels.copy()
    pred[np.isin(pred, [c["cell"] for c in fld.cells if "debris" in c["flags"]])] = 0
    m = match_objects(pred, truth)
    assert m["f1"] >= 0.85 and m["mean_iou"] > 0.6, m
    assert fld.annotation is not None and fld.annotation[20:40, 20:200].any()  # the bar, top left
    assert not any(fld.annotation[fld.labels == c["cell"]].any() for c in fld.kept)


def test_a_negative_field_has_a_low_signal_index(fields):
    neg = segment_field(field_grey(fields / "negative-1.png"))
    pos = segment_field(field_grey(fields / "homogeneous-1.png"))
    assert neg.signal_index() < 1.0 < pos.signal_index()


def test_a_field_of_dots_alone_has_no_nuclei_and_no_pattern(fields):
    rng = np.random.default_rng(3)
    img = 10 + rng.normal(0, 1.5, (500, 640))
    yy, xx = np.ogrid[-4:5, -4:5]
    for y, x in zip(rng.integers(10, 490, 150), rng.integers(10, 630, 150)):  # bright 3 px dots, no nucleus body
        img[y - 4 : y + 5, x - 4 : x + 5] += 120 * np.exp(-(yy**2 + xx**2) / 4.5)
    fld = segment_field(np.clip(img, 0, 255).astype(np.uint8).astype(np.float32))
    assert fld.cells and not fld.nuclei and "smaller than a nucleus" in fld.notes[-1]
    assert segment_field(field_grey(fields / "homogeneous-1.png")).nuclei
    proba = np.tile([[0.9, 0.1]], (20, 1))
    assert call_cells(proba, ["a", "b"], 5.0)["call"] == "a"
    call = call_cells(proba, ["a", "b"], 5.0, not_nuclei=fld.notes[-1])
    assert call["call"] == UNKNOWN and call["positive"] and "smaller than a nucleus" in call["note"]
    assert call_cells(proba, ["a", "b"], 0.2, not_nuclei=fld.notes[-1])["call"] == "negative"  # dim: negative first


def test_a_field_of_a_few_cells_keeps_them_apart():
    """With 1% of the field or less in nuclei, Otsu's threshold without the brightest 1% would fall into the
    background (the whole field one object); the whole field's threshold serves then."""
    img, truth, _ = make_field("centromere", np.random.default_rng(8), cells=8, mitotic=1, debris=12)
    fld = segment_field(img.astype(np.float32))
    assert fld.typical_area < 0.05 * img.size and len(fld.kept) >= 5
    assert match_objects(fld.labels, truth)["tp"] >= 6


def test_match_objects_counts_splits_and_merges():
    truth = np.zeros((20, 30), int)
    truth[2:10, 2:10], truth[2:10, 12:20] = 1, 2
    merged = (truth > 0).astype(int)
    merged[2:10, 10:12] = 1  # one object over both
    m = match_objects(merged, truth)
    assert m["merges"] == 1 and m["tp"] == 0
    split = truth.copy()
    split[2:10, 6:10] = 3  # the first cut in two
    m = match_objects(split, truth)
    assert m["splits"] == 1 and m["tp"] == 1 and m["predicted"] == 3


def test_outlines_become_filled_regions():
    lines = np.zeros((40, 40), np.uint8)
    lines[5, 5:20] = lines[19, 5:20] = lines[5:20, 5] = lines[5:20, 19] = 255  # a closed square
    lines[25:28, 25:28] = 255  # a speck
    lab = outlines_to_labels(lines)
    assert lab.max() == 1 and (lab == 1).sum() >= 13 * 13


def test_true_masks_read_as_datasets_ship_them():
    truth = np.zeros((40, 60), np.int32)
    truth[2:12, 2:12], truth[2:12, 12:22], truth[20:30, 30:40], truth[32:34, 50:52] = 1, 2, 3, 4  # 4: a speck
    labels = mask_to_labels(truth * 40)  # a grey label image: each level a nucleus, the speck left out
    assert labels.max() == 3 and match_objects(labels, truth)["tp"] == 3
    binary = np.where(truth > 0, 255, 0).astype(np.uint8)
    assert mask_to_labels(binary).max() == 2  # a binary mask: the two touching squares are one region
    blurred = binary.copy()
    blurred[2:12, 1], blurred[20:30, 29] = 128, 60  # anti-aliased edges: still binary, not levels
    assert mask_to_labels(blurred).max() == 2
    colour = np.zeros((3, 40, 60), np.uint8)
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)], 1):
        colour[:, truth == i] = np.array(rgb)[:, None]
    assert match_objects(mask_to_labels(colour), truth)["tp"] == 3  # each colour a nucleus
    assert mask_to_labels(np.stack([binary] * 3)).max() == 2  # grey saved as RGB
    assert mask_to_labels(np.zeros((10, 10), np.uint8)).max() == 0


def test_negative_threshold_from_labelled_fields():
    t = negative_threshold([0.2, 0.5], [0.9, 3.0, 12.0])
    assert t["negative_below"] == 0.7 and t["wrong"] == 0 and (t["negatives"], t["positives"]) == (2, 3)
    t = negative_threshold([0.2, 1.5], [0.9, 3.0, 12.0])  # overlapping: one field must be wrong
    assert t["wrong"] == 1 and 0.2 < t["negative_below"] < 3.0
    with pytest.raises(Hep2Error, match="fields labelled negative and fields labelled with a pattern"):
        negative_threshold([], [1.0])


def test_hep2_segment_writes_the_folder_layout_and_measures(fields, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("field,pattern\nhomogeneous-1.png,homogeneous\ncentromere-1,centromere\nnegative-1,negative\n")
    out = tmp_path / "cells"
    assert main(["segment", str(fields), "--out", str(out), "--labels", str(labels), "--truth"]) == 0
    text = capsys.readouterr().out
    assert "F1" in text and "centromere-1" in text
    assert "negative below:" in text and "calls 3 of the 3 labelled fields right" in text
    crops = sorted((out / "cells" / "homogeneous").glob("homogeneous-1_*[0-9].png"))
    assert len(crops) >= 10 and all(c.with_name(c.stem + "_mask.png").exists() for c in crops)
    assert Image.open(next((out / "cells" / "centromere").glob("*[0-9].png"))).mode in (
        "I;16",
        "I",
    )  # 16 bit stays 16 bit
    cells = rows(out / "cells.csv")
    assert {r["field"] for r in cells} == {"homogeneous-1", "centromere-1", "negative-1"}
    assert any(r["flags"] for r in cells) and all(r["crop"] == "" for r in cells if r["flags"])
    assert {r["specimen"] for r in rows(out / "cells" / "specimens.csv")} == {
        "homogeneous-1",
        "centromere-1",
        "negative-1",
    }
    seg = json.loads((out / "segmentation.json").read_text())
    assert seg["pooled"]["f1"] >= 0.85 and set(seg["fields"]) == {"homogeneous-1", "centromere-1", "negative-1"}
    assert len(list((out / "overlays").glob("*.png"))) == 3
    # the cells of labelled fields train a model as any folder of cells does
    two = tmp_path / "two"
    fields_in = [str(fields / "homogeneous-1.png"), str(fields / "centromere-1.png")]
    assert main(["segment", *fields_in, "--out", str(two), "--labels", str(labels)]) == 0
    run = tmp_path / "run"
    args = ["run", f"folder:{two / 'cells'}", "--method", "shape-index", "--protocol", "cv", "--set", "cv_folds=3"]
    assert main([*args, "--out", str(run), "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["accuracy"]["mean"] > 0.6


def test_hep2_segment_refuses_bad_fields_and_keeps_what_is_done(fields, tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.png").write_bytes((fields / "homogeneous-1.png").read_bytes())
    Image.fromarray(np.full((50, 60), 7, np.uint8)).save(bad / "b_tiny.png")
    out = tmp_path / "out"
    assert main(["segment", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b_tiny.png is 60x50 px: too small for a field" in err and "the 1 fields before it are written" in err
    assert len(rows(out / "fields.csv")) == 1 and any((out / "cells" / "unlabelled").glob("a_*.png"))
    out2 = tmp_path / "out2"
    assert main(["segment", str(bad), "--out", str(out2), "--skip-bad"]) == 0
    assert "skipped:" in capsys.readouterr().err
    assert main(["segment", str(bad), "--out", str(out2)]) == 2  # not over a folder already written
    assert "exists and is not an empty folder" in capsys.readouterr().err
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.fromarray(np.full((500, 600), 9, np.uint8)).save(blank / "empty.png")
    assert main(["segment", str(blank), "--out", str(tmp_path / "out3")]) == 0
    assert rows(tmp_path / "out3" / "fields.csv")[0]["notes"] == "the field is blank"


def test_hep2_predict_calls_fields_and_wells(fields, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["run", "synthetic:12", "--method", "shape-index", "--out", str(model), "--quiet"]) == 0
    out, wells, ov = tmp_path / "cells.csv", tmp_path / "wells.csv", tmp_path / "ov"
    args = ["predict", "--model", str(model), str(fields), "--out", str(out), "--summary", str(wells)]
    assert main([*args, "--overlays", str(ov)]) == 0
    text = capsys.readouterr().out
    calls = {r["field"]: r for r in rows(tmp_path / "cells_fields.csv")}
    assert calls["negative-1"]["call"] == "negative" and calls["negative-1"]["icap"] == "AC-0"
    assert calls["homogeneous-1"]["positive"] == "True" and calls["homogeneous-1"]["icap"].startswith("AC-")
    assert float(calls["homogeneous-1"]["signal_index"]) > 1.0 and "negative" in text
    cells = rows(out)
    assert {"pattern", "icap", "p_homogeneous"} <= set(cells[0]) and len(cells) > 20
    assert len(rows(wells)) == 1 and len(list(ov.glob("*.png"))) == 3
    # fields and cut-out cells in one call: refused
    crop_dir = tmp_path / "mixed"
    crop_dir.mkdir()
    (crop_dir / "f.png").write_bytes((fields / "homogeneous-1.png").read_bytes())
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(crop_dir / "c.png")
    assert main(["predict", "--model", str(model), str(crop_dir)]) == 2
    assert "mix 1 whole fields" in capsys.readouterr().err


def test_a_saturated_field_flags_its_saturated_cells_and_a_uniform_one_is_blank(tmp_path):
    img, _, _ = make_field("homogeneous", np.random.default_rng(3), **SMALL)
    over = np.clip(img.astype(np.int32) * 6, 0, 255).astype(np.uint8)  # an exposure 6 times too long
    Image.fromarray(over).save(tmp_path / "over.png")
    fld = segment_field(field_grey(tmp_path / "over.png"))
    assert any("saturated" in c["flags"] for c in fld.cells)
    assert not any("saturated" in c["flags"] for c in fld.kept)  # flagged cells stay out of the call
    Image.fromarray(np.full((500, 600), 255, np.uint8)).save(tmp_path / "white.png")
    white = segment_field(field_grey(tmp_path / "white.png"))
    assert white.cells == [] and white.notes == ["the field is blank"]
