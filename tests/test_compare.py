"""The method registry and `hep2 compare`: methods side by side on identical splits."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hep2.cli import main
from hep2.data import open_dataset
from hep2.pipeline.methods import DCAE_SETTINGS, METHODS, Method, register_method
from hep2.pipeline.predict import Predictor


@register_method("test-intensity-logreg")
class IntensityLogReg(Method):
    """A trivial method defined outside the package: intensity histograms + logistic regression."""

    description = "intensity histogram + logistic regression (registered from a test)"
    ignores = DCAE_SETTINGS

    def transform(self, images):
        return np.stack([np.histogram(im, bins=16, range=(0, 255))[0] / im.size for im in images]).astype(np.float32)

    def classifier(self):
        return LogisticRegression(max_iter=500)


def _ids(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [(r["split"], r["id"]) for r in rows]


def test_a_method_registered_from_outside_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--method",
                "test-intensity-logreg",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "test-intensity-logreg" and len(m["accuracy"]["per_split"]) == 5
    assert 0.0 <= m["accuracy"]["mean"] <= 1.0 and m["paper_accuracy"] is None
    assert json.loads((out / "config.json").read_text())["autoencoder_saw_test_images"] is False
    assert np.load(out / "features.npy").shape == (50, 16)
    assert (out / "model" / "pipeline.pt").exists() and not (out / "reconstructions.png").exists()
    assert "registered from a test" in (out / "report.md").read_text()


def test_bow_learns_its_codebook_from_the_training_images_and_predicts_from_its_run(tmp_path):
    out = tmp_path / "bow"
    assert (
        main(["run", "synthetic:10", "--protocol", "grouped", "--preset", "tiny", "--method", "bow", "--out", str(out)])
        == 0
    )  # not quiet: the codebook shows progress, the saved model must not
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "bow" and len(m["accuracy"]["per_split"]) == 5 and m["accuracy"]["mean"] >= 0.6
    assert json.loads((out / "config.json").read_text())["autoencoder_saw_test_images"] is True
    assert np.load(out / "features.npy").shape == (50, 5 * 1024)
    assert "The codebook was learnt, without labels, from images that include" in (out / "report.md").read_text()
    pred = Predictor(out)  # the saved model: the codebook and the classifier trained on every cell
    assert pred.method_name == "bow" and pred.method.bow_.codebook_.cluster_centers_.shape == (1024, 104)
    assert not pred.method.bow_.progress
    cells = open_dataset("synthetic:10")
    rows, bad = pred.predict_files([c.path for c in cells.cells])
    assert not bad and np.mean([r[1] == c.label for r, c in zip(rows, cells.cells)]) >= 0.9


def test_shape_index_runs_and_predicts_from_its_run(tmp_path):
    out = tmp_path / "si"
    assert (
        main(
            [
                "run",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--method",
                "shape-index",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "shape-index" and len(m["accuracy"]["per_split"]) == 5 and m["accuracy"]["mean"] >= 0.6
    assert json.loads((out / "config.json").read_text())["autoencoder_saw_test_images"] is False
    assert np.load(out / "features.npy").shape == (50, 800)
    pred = Predictor(out)
    assert pred.method_name == "shape-index"
    assert pred.classifier.best_params_ == {"C": 10.0, "gamma": 1 / 800}
    cells = open_dataset("synthetic:10")
    rows, bad = pred.predict_files([c.path for c in cells.cells])
    assert not bad and np.mean([r[1] == c.label for r, c in zip(rows, cells.cells)]) >= 0.9


def test_a_denoised_run_says_so_and_its_model_denoises_new_files(tmp_path):
    from hep2.data import load_images

    out = tmp_path / "si-dn"
    assert (
        main(
            [
                "run",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--method",
                "shape-index",
                "--set",
                "denoise=1.6",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["preprocess"]["denoise"] == 1.6
    assert "- **Input settings**: `denoise` = 1.6" in (out / "report.md").read_text()
    pred = Predictor(out)
    cells = open_dataset("synthetic:10")
    got, ok, bad = pred.load_files([c.path for c in cells.cells])
    want, _ = load_images(cells, pred.prep, cache=False)
    plain, _ = load_images(cells, replace(pred.prep, denoise=0.0), cache=False)
    assert pred.prep.denoise == 1.6 and not bad
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, plain)


def test_compare_runs_methods_on_identical_splits(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=2",
                "--set",
                "mlp_epochs=10",
                "--methods",
                "dcae-mlp",
                "test-intensity-logreg",
                "--ensemble",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads((out / "comparison.json").read_text())
    assert result["protocol"] == "grouped" and result["preset"] == "tiny"
    assert [r["method"] for r in result["rows"]] == ["dcae-mlp", "test-intensity-logreg", "ensemble"]
    ens = json.loads((out / "ensemble" / "metrics.json").read_text())
    assert result["rows"][2]["accuracy"] == {k: ens["accuracy"][k] for k in ("mean", "std")}
    assert [m["run"] for m in ens["members"]] == [str(out / "dcae-mlp"), str(out / "test-intensity-logreg")]
    assert Predictor(out / "ensemble").method_name == "ensemble"
    # the paper's figures are on SNPHEp-2: none beside synthetic data's
    assert METHODS["dcae-mlp"].paper_accuracy == 0.8808 and result["rows"][0]["paper_accuracy"] is None
    for r in result["rows"]:
        assert set(r["accuracy"]) == {"mean", "std"} and 0 <= r["accuracy"]["mean"] <= 1
    # identical splits: the same (split, cell) pairs in both methods' predictions
    assert _ids(out / "dcae-mlp" / "predictions.csv") == _ids(out / "test-intensity-logreg" / "predictions.csv")
    md = (out / "comparison.md").read_text()
    assert "grouped" in md and "0.8808" not in md and "scores far lower" not in md
    assert (out / "comparison.png").stat().st_size > 1000
    assert "paper" not in (out / "dcae-mlp" / "report.md").read_text().split("## Results")[1]
    assert "test-intensity-logreg" in capsys.readouterr().out
    # a finished comparison is reused with --resume, not retrained
    before = (out / "dcae-mlp" / "metrics.json").read_bytes()
    ens_before = (out / "ensemble" / "metrics.json").read_bytes()
    assert (
        main(
            [
                "compare",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=2",
                "--set",
                "mlp_epochs=10",
                "--methods",
                "dcae-mlp",
                "test-intensity-logreg",
                "--ensemble",
                "--out",
                str(out),
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "dcae-mlp" / "metrics.json").read_bytes() == before
    assert (out / "ensemble" / "metrics.json").read_bytes() == ens_before
    # ... but not when it was made with other settings: refused, with the way to go on, nothing lost
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=3",
                "--set",
                "mlp_epochs=10",
                "--methods",
                "dcae-mlp",
                "test-intensity-logreg",
                "--ensemble",
                "--out",
                str(out),
                "--resume",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "ae_epochs: 2 -> 3" in err and "--set ae_epochs=2" in err and "Traceback" not in err
    assert (out / "dcae-mlp" / "metrics.json").read_bytes() == before
    # a method that declares it ignores the autoencoder's settings is reused whatever they say
    logreg = (out / "test-intensity-logreg" / "metrics.json").read_bytes()
    assert (
        main(
            [
                "compare",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=3",
                "--set",
                "mlp_epochs=10",
                "--methods",
                "test-intensity-logreg",
                "--out",
                str(out),
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "test-intensity-logreg" / "metrics.json").read_bytes() == logreg


def test_resume_refuses_methods_run_on_another_subset(tmp_path, capsys):
    from hep2.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "d" / "train", per_class=6, specimens=5, seed=0)
    make_synthetic(tmp_path / "d" / "test", per_class=6, specimens=5, seed=1)
    args = [
        "compare",
        f"folder:{tmp_path / 'd'}",
        "--protocol",
        "cv",
        "--preset",
        "tiny",
        "--methods",
        "test-intensity-logreg",
        "shape-index",
        "--out",
        str(tmp_path / "c"),
        "--quiet",
    ]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0  # the same subset (train)
    assert main([*args, "--subset", "test", "--resume"]) == 2
    assert "subset: 'train' -> 'test'" in capsys.readouterr().err


def test_an_ensemble_of_one_method_is_refused_before_any_work(tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                "synthetic:10",
                "--preset",
                "tiny",
                "--methods",
                "dcae-mlp",
                "--ensemble",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "name at least two" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_unknown_method_is_a_clear_error(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "synthetic:10",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--method",
                "nope",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "dcae-mlp" in err


def test_resume_lets_a_baseline_differ_in_input_settings_it_never_reads(tmp_path):
    from hep2.errors import Hep2Error
    from hep2.pipeline.runfolder import check_same_run
    from hep2.presets import get_preset

    def config(method, **overrides):
        return {
            "dataset": "synthetic:10",
            "protocol": "grouped",
            "subset": "train",
            "method": method,
            "autoencoder_saw_test_images": False,
            "preset": get_preset("tiny", overrides=overrides).to_dict(),
        }

    for method in ("lbp-svm", "texture-svm", "cnn5", "bow", "shape-index"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "config.json").write_text(json.dumps(config(method)))
    for method in ("lbp-svm", "texture-svm", "cnn5"):  # published inputs: denoise / highpass / scale unread
        check_same_run(tmp_path / method, config(method, denoise="1.2", highpass="3", scale="1"))
    for method in ("bow", "shape-index"):  # these read denoise: a run made without it is refused
        check_same_run(tmp_path / method, config(method, highpass="3"))
        with pytest.raises(Hep2Error, match=r"denoise: 0.0 -> 1.2.*--set denoise=0"):
            check_same_run(tmp_path / method, config(method, denoise="1.2"))
