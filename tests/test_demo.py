"""`hep2 demo`: the paper's method beside the recommended method, in one folder whose report opens with both."""

from __future__ import annotations

import json

import pytest

from hep2.cli import main
from hep2.errors import Hep2Error
from hep2.pipeline.demo import demo


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--per-class", "8", "--out", str(out), "--quiet"]) == 0
    return out


def test_the_demo_prints_both_figures_and_writes_their_comparison(demo_folder, capsys):
    result = json.loads((demo_folder / "comparison.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["paper", "words", "bow", "recommended"]
    assert result["dataset"] == "synthetic:8" and result["protocol"] == "grouped" and result["preset"] == "tiny"
    for folder in ("paper", "words", "bow", "recommended"):
        assert (demo_folder / folder / "metrics.json").is_file() and (demo_folder / folder / "model").is_dir()
    paper = json.loads((demo_folder / "paper" / "config.json").read_text())["preset"]
    assert (paper["ae_ensemble"], paper["mlp_ensemble"], paper["features"]) == (3, 2, "conv5")
    words = json.loads((demo_folder / "words" / "config.json").read_text())["preset"]
    assert (words["features"], words["head"]) == ("words", "logistic")
    members = json.loads((demo_folder / "recommended" / "metrics.json").read_text())["members"]
    assert [m["run"] for m in members] == [str(demo_folder / "words"), str(demo_folder / "bow")]
    report = (demo_folder / "comparison.md").read_text()
    assert report.startswith("# Comparison on `synthetic:8`") and "| recommended |" in report
    assert report.index("| paper |") < report.index("| recommended |")


def test_the_demo_resumes_from_its_finished_runs_and_refuses_a_foreign_folder(demo_folder, tmp_path, capsys):
    before = json.loads((demo_folder / "comparison.json").read_text())
    again = demo(demo_folder, per_class=8, resume=True, verbose=False)
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in before["rows"]]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(Hep2Error, match=r"is not a folder of `hep2 demo` \(it holds notes.txt\)"):
        demo(tmp_path / "other", per_class=8, resume=True, verbose=False)
    capsys.readouterr()
    assert main(["demo", "--per-class", "8", "--out", str(demo_folder), "--quiet", "--resume"]) == 0
    printed = capsys.readouterr().out.splitlines()
    paper, recommended = before["rows"][0]["accuracy"]["mean"], before["rows"][-1]["accuracy"]["mean"]
    assert any(line.startswith("the paper's method") and f"accuracy {paper:.4f}" in line for line in printed)
    assert any(line.startswith("recommended:") and f"accuracy {recommended:.4f}" in line for line in printed)
    assert main(["demo", "--per-class", "8", "--out", str(demo_folder), "--quiet"]) == 2
    assert "already exists and is not empty: pass --resume" in capsys.readouterr().err


def test_the_demo_shows_the_field_path(demo_folder):
    """Three synthetic whole fields, their cells found and classified by the recommended model, each field called."""
    import csv

    with open(demo_folder / "fields" / "calls.csv", newline="") as fh:
        calls = {r["field"]: r for r in csv.DictReader(fh)}
    assert set(calls) == {"homogeneous-1", "centromere-1", "negative-1"}
    assert calls["negative-1"]["call"] == "negative" and calls["negative-1"]["icap"] == "AC-0"
    assert calls["homogeneous-1"]["call"] != "negative" and int(calls["homogeneous-1"]["cells"]) >= 10
    assert len(list((demo_folder / "fields" / "overlays").glob("*.png"))) == 3
