"""`hep2 export`: ONNX (run in onnxruntime) and TorchScript graphs of a trained run, compared with
hep2's own prediction on real SNPHEp-2 cells (synthetic cells where the data is absent), dynamic
batch size, the model card, and the clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SNPHEP2_ROOT
from hep2.cli import main
from hep2.data import load_images, open_dataset
from hep2.errors import Hep2Error
from hep2.pipeline.export import export, run_exported
from hep2.pipeline.methods import get_method
from hep2.pipeline.predict import Predictor, save_model
from hep2.presets import PRESETS

pytest.importorskip("onnxruntime")


def _dcae_run(name, tmp_path_factory, cache, *settings):
    """A tiny dcae-mlp run on synthetic:12 with feature tta and the given settings."""
    out = tmp_path_factory.mktemp("runs") / name
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(cache))
        assert (
            main(
                [
                    "run",
                    "synthetic:12",
                    "--protocol",
                    "grouped",
                    "--preset",
                    "tiny",
                    "--set",
                    "ae_epochs=2",
                    "--set",
                    "mlp_epochs=20",
                    "--set",
                    "tta=true",
                    *[a for kv in settings for a in ("--set", kv)],
                    "--quiet",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    return out


@pytest.fixture(scope="module")
def dcae_run(tmp_path_factory, _session_cache):
    """Conv 5 + pooled features, 2 autoencoders, 2 classifiers on each."""
    return _dcae_run("dcae", tmp_path_factory, _session_cache, "mlp_ensemble=2", "ae_ensemble=2", "features=both")


@pytest.fixture(scope="module")
def pooled_run(tmp_path_factory, _session_cache):
    """The `improved` design: pooled Conv 1-4 features, a linear classifier, one fixed magnification."""
    return _dcae_run("pooled", tmp_path_factory, _session_cache, "features=pooled", "hidden=", "dropout=0", "scale=0.5")


@pytest.fixture(scope="module")
def views_run(tmp_path_factory, _session_cache):
    """Two autoencoders, one on the plain cell and one on the cell high-pass filtered at sigma 2 (`ae_views`),
    the classifiers trained on each flip / rotation's features (`tta_samples`), as in `improved`."""
    return _dcae_run(
        "views",
        tmp_path_factory,
        _session_cache,
        "features=pooled",
        "hidden=",
        "dropout=0",
        "ae_ensemble=2",
        "ae_views=0,2",
        "ae_restore=true",
        "ae_intensity=0.3",
        "tta_samples=true",
    )


@pytest.fixture(scope="module")
def words_run(tmp_path_factory, _session_cache):
    """The `words` preset's reading: two autoencoders (plain and high-pass views), each a bag of words of its Conv 3
    activations, one logistic regression on them all."""
    return _dcae_run(
        "words",
        tmp_path_factory,
        _session_cache,
        "features=words",
        "ae_words=16",
        "head=logistic",
        "ae_ensemble=2",
        "ae_views=0,2",
    )


def test_each_autoencoder_reads_its_own_view_of_the_cell(views_run):
    from hep2.data import preprocess_image

    pred = Predictor(views_run)
    assert pred.prep.views == (0.0, 2.0)
    aes = pred.method.autoencoders
    assert [ae.config_.highpass for ae in aes] == [0.0, 2.0] and [ae.config_.seed for ae in aes] == [0, 1]
    rows = _csv_rows(views_run / "features_ids.csv")[:10]
    cells = open_dataset("synthetic:12")
    by_id = {c.id: c for c in cells.cells}
    paths = [by_id[r["id"]].path for r in rows]
    stacked = np.stack([np.round(preprocess_image(p, pred.prep) * 255).astype(np.uint8) for p in paths])
    assert stacked.shape == (10, 2, 32, 32) and not np.array_equal(stacked[:, 0], stacked[:, 1])
    saved = np.load(views_run / "features.npy")[:10]
    width = saved.shape[1] // 2
    np.testing.assert_allclose(pred.method.transform(stacked), saved, atol=1e-5)
    # each autoencoder, given the files, preprocesses them with its own filter: the same features
    for k, ae in enumerate(aes):
        np.testing.assert_allclose(ae.transform(paths), saved[:, k * width : (k + 1) * width], atol=1e-5)
    np.testing.assert_allclose(pred.method.transform(paths), saved, atol=1e-5)  # the method too
    with pytest.raises(Hep2Error, match=r"shape \(N, 2, S, S\)"):
        pred.method.transform(stacked[:, 0])
    # predicting from files gives the run's final model on those cells; the page's thumbnails are 2-D
    proba, thumbs, ok, bad = pred.classify(paths)
    assert thumbs.shape == (10, 32, 32) and not bad
    np.testing.assert_array_equal(thumbs, stacked[:, 0])  # the unfiltered view
    np.testing.assert_allclose(proba, pred.predict_images(stacked), atol=1e-6)


def test_a_words_run_reports_its_reading_and_its_model_keeps_the_codebooks(words_run):
    report = (words_run / "report.md").read_text()
    assert (
        "a bag of 16 words of Conv 3's local activations" in report
        and "logistic regression on all 160 values" in report
    )
    pred = Predictor(words_run)
    assert [tuple(ae.codebook_.shape) for ae in pred.method.autoencoders] == [(16, 64), (16, 64)]
    assert pred.method.autoencoders[0].model_.decoder is not None and not len(
        pred.method.autoencoders[0].model_.decoder
    )
    imgs = _cells(pred, 6)
    p = pred.predict_images(imgs)
    assert p.shape == (6, len(pred.classes)) and np.allclose(p.sum(1), 1)


def test_a_conv5_features_model_is_saved_without_its_decoder(dcae_run):
    from hep2.errors import Hep2Error

    pred = Predictor(dcae_run)
    for ae in pred.method.autoencoders:
        assert ae.model_.conv5 is not None and ae.model_.deconv5 is None and len(ae.model_.decoder) == 0
    with pytest.raises(Hep2Error, match="without its decoder"):
        pred.method.reconstruct(np.zeros((1, 32, 32), np.uint8))


def test_a_pooled_features_model_is_saved_without_conv5_and_decoder(pooled_run):
    from hep2.errors import Hep2Error
    from hep2.training import load_checkpoint

    pred = Predictor(pooled_run)
    assert pred.prep.scale == 0.5  # the run's preprocessing travels with its model
    ae = pred.method.ae_
    assert ae.model_.conv5 is None and ae.model_.deconv5 is None and len(ae.model_.decoder) == 0
    full = load_checkpoint(pooled_run / "checkpoints" / "dcae-mlp.pt")["model"]
    assert (pooled_run / "model" / "pipeline.pt").stat().st_size < 0.5 * sum(
        v.numel() * v.element_size() for v in full.values()
    )
    # the saved model gives the run's own features of its cells
    rows = _csv_rows(pooled_run / "features_ids.csv")
    cells = open_dataset("synthetic:12")
    by_id = {c.id: i for i, c in enumerate(cells.cells)}
    pick = [by_id[r["id"]] for r in rows[:20]]
    imgs, _ = load_images(cells.subset(pick), pred.prep)
    np.testing.assert_allclose(pred.method.transform(imgs), np.load(pooled_run / "features.npy")[:20], atol=1e-5)
    with pytest.raises(Hep2Error, match="without its decoder"):
        pred.method.reconstruct(imgs)


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cnn_model(name, tmp_path_factory, cache):
    """A cnn5 / resnet model folder (two epochs of training on synthetic cells), saved as `hep2 run` saves it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(cache))
        cells = open_dataset("synthetic:6")
        method = get_method(name, PRESETS["tiny"])
        imgs, _ = load_images(cells, method.preprocess())
    clf = method.classifier().set_params(epochs=2, patience=0, device="cpu").fit(imgs, cells.y)
    folder = tmp_path_factory.mktemp("runs") / name
    save_model(folder / "model", method, clf, cells.classes)
    return folder


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory, _session_cache):
    return _cnn_model("cnn5", tmp_path_factory, _session_cache)


@pytest.fixture(scope="module")
def resnet_model(tmp_path_factory, _session_cache):
    return _cnn_model("resnet", tmp_path_factory, _session_cache)


def _cells(pred: Predictor, n: int = 24) -> np.ndarray:
    """Real SNPHEp-2 cells of every class, preprocessed as the model wants (synthetic cells without the data)."""
    name = f"snphep2:{SNPHEP2_ROOT}" if (SNPHEP2_ROOT / "train").is_dir() else "synthetic:6"
    cells = open_dataset(name)
    pick = np.linspace(0, len(cells) - 1, n).astype(int)
    imgs, _ = load_images(cells.subset(pick), pred.prep)
    return imgs


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("which", ["dcae_run", "pooled_run", "views_run", "words_run", "cnn_model", "resnet_model"])
def test_exported_graph_gives_hep2s_probabilities_on_real_cells(fmt, which, request, tmp_path):
    run = request.getfixturevalue(which)
    out = tmp_path / f"model.{fmt}"
    info = export(run, fmt, out)
    assert out.is_file() and info["max_abs_diff"] < 1e-4
    pred = Predictor(run)
    imgs = _cells(pred)
    ours = pred.predict_images(imgs)
    x = (imgs if imgs.ndim == 4 else imgs[:, None]).astype(np.float32) / 255  # (N, views, S, S)
    assert list(x.shape[1:]) == info["input"][1:]
    theirs = run_exported(out, fmt, x)
    assert theirs.shape == (len(imgs), len(pred.classes))
    assert np.abs(ours - theirs).max() < 1e-4
    np.testing.assert_allclose(theirs.sum(1), 1, atol=1e-5)
    # dynamic batch: one image, and an odd batch, give the same rows
    np.testing.assert_allclose(run_exported(out, fmt, x[:1]), theirs[:1], atol=1e-5)
    np.testing.assert_allclose(run_exported(out, fmt, x[:7]), theirs[:7], atol=1e-5)


def test_onnx_file_has_one_image_input_and_carries_the_classes(dcae_run, tmp_path):
    import json

    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(dcae_run), "--format", "onnx", "--out", str(out)]) == 0
    m = onnx.load(str(out))
    assert [i.name for i in m.graph.input] == ["image"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 32, 32]
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["hep2_classes"]) == Predictor(dcae_run).classes
    assert json.loads(meta["hep2_preprocessing"])["size"] == 32


def test_model_card_states_data_protocol_metrics_and_limits(dcae_run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    main(["export", "--model", str(dcae_run), "--out", str(out)])
    assert "model card" in capsys.readouterr().out
    card = (tmp_path / "m.onnx.md").read_text()
    for text in (
        "synthetic:12",
        "**grouped**",
        "Accuracy:",
        "mean class accuracy",
        "not a diagnostic device",
        "Preset: `tiny`",
        "(N, 1, 32, 32)",
        "Preprocessing",
    ):
        assert text in card, text
    # the model file itself, or model/, names the same run
    for given in (dcae_run / "model" / "pipeline.pt", dcae_run / "model"):
        assert main(["export", "--model", str(given), "--out", str(tmp_path / "b.onnx")]) == 0
        assert (tmp_path / "b.onnx.md").read_text().replace("b.onnx", "m.onnx").replace(
            str(given), str(dcae_run)
        ) == card


def test_export_errors_are_clear(dcae_run, tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "pipeline.pt" in capsys.readouterr().err
    assert main(["export", "--model", str(dcae_run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(Hep2Error, match="unknown export format"):
        export(dcae_run, "tflite", tmp_path / "x")
    # the format is what the name says, and a name that says another is refused before any work
    assert main(["export", "--model", str(dcae_run), "--out", str(tmp_path / "x")]) == 2
    assert "name the file .onnx (ONNX) or .pt (TorchScript), or give --format" in capsys.readouterr().err
    assert main(["export", "--model", str(dcae_run), "--format", "torchscript", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "a .onnx file would be read as onnx; name it x.pt" in capsys.readouterr().err
    assert main(["export", "--model", str(dcae_run), "--format", "onnx", "--out", str(tmp_path / "x.pt")]) == 2
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("name", ["lbp-svm", "bow", "shape-index"])
def test_scikit_learn_methods_cannot_be_exported(tmp_path, _session_cache, name):
    from hep2.features.handcrafted import SVMClassifier

    cells = open_dataset("synthetic:6")
    method = get_method(name, PRESETS["tiny"])
    save_model(tmp_path / "model", method, SVMClassifier(), cells.classes)
    with pytest.raises(Hep2Error, match=f"{name}.*no ONNX"):
        export(tmp_path, "onnx", tmp_path / "x.onnx")
