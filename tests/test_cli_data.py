"""`hep2 data summary` in JSON and text form, and `python -m hep2`."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from hep2.cli import main

TRAIN = {"homogeneous": 200, "coarse_speckled": 172, "fine_speckled": 177, "nucleolar": 200, "centromere": 156}
TEST = {"homogeneous": 200, "coarse_speckled": 192, "fine_speckled": 196, "nucleolar": 200, "centromere": 191}


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(map(str, argv)))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def snp_json(snphep2_root):
    code, out, err = run("data", "summary", f"snphep2:{snphep2_root}", "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_summary_json_form(snp_json, snphep2_root):
    s = snp_json
    assert s["dataset"] == f"snphep2:{snphep2_root}"
    assert s["problems"] == []
    assert s["skipped"] == {"count": 0, "files": []}
    want_splits = ["train", "test"] + [f"split-50-{k}/{p}" for k in range(1, 6) for p in ("train", "test")]
    assert list(s["splits"]) == want_splits
    for name, sp in s["splits"].items():
        assert set(sp) == {"total", "classes"}
        assert sum(sp["classes"].values()) == sp["total"], name


def test_summary_json_counts(snp_json):
    assert snp_json["splits"]["train"] == {"total": 905, "classes": TRAIN}
    assert snp_json["splits"]["test"] == {"total": 979, "classes": TEST}
    assert list(snp_json["splits"]["train"]["classes"]) == list(TRAIN)  # canonical class order
    for k in range(1, 6):
        assert snp_json["splits"][f"split-50-{k}/train"]["total"] == 453
        assert snp_json["splits"][f"split-50-{k}/test"]["total"] == 490


def test_summary_json_sizes_and_intensity(snp_json):
    assert snp_json["image_size"]["min"] == [32, 32]
    assert snp_json["image_size"]["median"] == [48, 48]
    assert max(snp_json["image_size"]["max"]) == 125
    assert snp_json["intensity"] == {"positive": 952, "intermediate": 854, "unknown": 78}
    assert snp_json["specimens"] is None
    assert len(snp_json["fingerprint"]) == 16


def test_summary_text_table(snphep2_root, capsys):
    assert main(["data", "summary", f"snphep2:{snphep2_root}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"dataset: snphep2:{snphep2_root}")
    header = next(line for line in lines if line.startswith("split"))
    assert header.split() == ["split", "total", *TRAIN]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in lines
        if line.split() and (line.startswith("train") or line.startswith("test") or line.startswith("split-50-"))
    }
    assert rows["train"] == ["905", *map(str, TRAIN.values())]
    assert rows["test"] == ["979", *map(str, TEST.values())]
    assert rows["split-50-5/test"][0] == "490"
    assert len(rows) == 12
    assert "problems: none" in out
    assert "intensity: positive 952, intermediate 854, unknown 78" in out
    assert "skipped" not in out


def test_summary_small_folder_all_split(tmp_path, images):
    root = tmp_path / "cells"
    for i in range(3):
        images.png(root / "golgi" / f"{i}.png", seed=i)
    images.tiff16(root / "Nucleolar" / "big.tif", images.array(40, 20, seed=9, high=60000, dtype=np.uint16))
    images.png(root / "golgi" / "copy.png", images.array(seed=0))  # byte-identical to golgi/0.png
    code, out, err = run("data", "summary", f"folder:{root}", "--format", "json")
    assert code == 0, err
    s = json.loads(out)
    assert s["splits"] == {"all": {"total": 5, "classes": {"nucleolar": 1, "golgi": 4}}}
    assert s["image_size"]["max"] == [24, 40] and s["image_size"]["min"] == [20, 24]
    assert s["problems"] == [
        "1 images are byte-identical copies of another image in the set",
        "classes nucleolar (1), golgi (4) have fewer than 5 cells, too few to train on or to "
        "score (a misspelt class name makes a class of its own)",
    ]


def test_summary_reports_missing_class_in_a_split(tmp_path, images):
    root = tmp_path / "cells"
    images.png(root / "train" / "golgi" / "a.png")
    images.png(root / "train" / "nucleolar" / "b.png", seed=1)
    images.png(root / "test" / "golgi" / "c.png", seed=2)
    code, out, _ = run("data", "summary", f"folder:{root}", "--format", "json")
    s = json.loads(out)
    assert s["splits"]["test"] == {"total": 1, "classes": {"nucleolar": 0, "golgi": 1}}
    assert "split test has no cells of class nucleolar" in s["problems"]


def test_python_m_hep2_help():
    r = subprocess.run([sys.executable, "-m", "hep2", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: hep2") and "data" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "hep2", "data", "summary", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "--skip-bad" in r.stdout and "snphep2:PATH" in r.stdout


def test_python_m_hep2_error_exit(tmp_path):
    missing = tmp_path / "no_such_folder"
    r = subprocess.run(
        [sys.executable, "-m", "hep2", "data", "summary", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("hep2: error:") and str(missing) in r.stderr and "Traceback" not in r.stderr
