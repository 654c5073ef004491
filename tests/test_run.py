"""`hep2 run` end to end on small synthetic sets (and SNPHEp-2 when present), the run folder it
writes, resume, its errors, and `hep2 predict` with the saved model."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hep2.estimators as estimators_mod
from hep2.cli import main
from hep2.data.synthetic import make_synthetic
from hep2.pipeline.predict import Predictor
from hep2.presets import PRESETS
from hep2.training import load_checkpoint

CLASSES = ["homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere"]
GROUPED = [
    "synthetic:12",
    "--protocol",
    "grouped",
    "--preset",
    "tiny",
    "--set",
    "ae_epochs=2",
    "--set",
    "mlp_epochs=20",
    "--quiet",
]
RUN_FILES = [
    "config.json",
    "environment.json",
    "data.json",
    "model/pipeline.pt",
    "features.npy",
    "features_ids.csv",
    "metrics.json",
    "predictions.csv",
    "confusion.png",
    "reconstructions.png",
    "curves.png",
    "report.html",
    "report.md",
]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _json(path):
    return json.loads(path.read_text())


def _without_times(metrics):
    return {k: v for k, v in metrics.items() if k != "seconds"}


def _dcae_state(run_dir):
    return load_checkpoint(run_dir / "model/pipeline.pt")["features"].ae_.model_.state_dict()


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def cache(_session_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEP2_CACHE", str(_session_cache))
        yield _session_cache


@pytest.fixture(scope="module")
def grouped_run(cache, tmp_path_factory):
    """One finished grouped run on synthetic:12 (60 cells, 20 specimens), shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "grouped"
    assert main(["run", *GROUPED, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def split_folder(cache, tmp_path_factory):
    """A folder layout with train/ and test/ (5 synthetic cells per class each) and no specimens.csv
    at the root: no specimen IDs."""
    root = tmp_path_factory.mktemp("splitdata")
    make_synthetic(root / "train", per_class=6, specimens=5, seed=0)
    make_synthetic(root / "test", per_class=6, specimens=5, seed=1)
    return root


# ------------------------------------------------------------------------------ the run folder


def test_run_writes_every_file(grouped_run):
    missing = [f for f in RUN_FILES if not (grouped_run / f).is_file() or (grouped_run / f).stat().st_size == 0]
    assert missing == []
    assert not list(grouped_run.rglob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    for f in ("report.html", "metrics.json", "model/pipeline.pt"):  # readable like any file, not 0600
        assert (grouped_run / f).stat().st_mode & 0o777 == 0o666 & ~umask
    for png in ("confusion.png", "reconstructions.png", "curves.png"):
        assert (grouped_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_environment_and_data_json(grouped_run):
    config = _json(grouped_run / "config.json")
    assert config["dataset"] == "synthetic:12" and config["protocol"] == "grouped"
    assert config["subset"] == "all"  # synthetic has no train split: the whole set is used
    assert config["preset"]["name"] == "tiny" and config["preset"]["ae_epochs"] == 2
    assert config["preset"]["mlp_epochs"] == 20 and config["preset"]["size"] == 32
    assert config["autoencoder_saw_test_images"] is True
    assert config["preprocess"] == {
        "size": 32,
        "low_pct": 1.0,
        "high_pct": 99.5,
        "use_mask": True,
        "keep_aspect": True,
        "scale": 0.0,
        "highpass": 0.0,
        "views": [],
        "equalize": False,
        "denoise": 0.0,
        "channel": "mean",
        "fit_cell": False,
    }  # what the method used
    env = _json(grouped_run / "environment.json")
    assert {"hep2", "python", "torch", "numpy", "scikit-learn", "device", "torch_threads", "cpu_count"} <= set(env)
    assert env["torch"] == torch.__version__
    assert env["precision"] == {"train": "fp32", "extract": "fp32"}  # tiny computes in fp32 on every machine
    assert isinstance(env["bf16_native"], bool)
    data = _json(grouped_run / "data.json")
    assert data["n_cells"] == 60 and data["classes"] == CLASSES
    assert isinstance(data["fingerprint"], str) and len(data["fingerprint"]) == 16
    assert data["skipped"]["count"] == 0


def test_metrics_json(grouped_run):
    m = _json(grouped_run / "metrics.json")
    assert m["protocol"] == "grouped"
    acc = m["accuracy"]
    assert set(acc) == {"mean", "std", "per_split"}
    assert list(acc["per_split"]) == [f"fold-{k}" for k in range(1, 6)]
    values = list(acc["per_split"].values())
    assert all(0 <= v <= 1 for v in values)
    assert acc["mean"] == pytest.approx(np.mean(values))
    assert acc["std"] == pytest.approx(np.std(values, ddof=1))
    assert set(m["mca"]) == {"mean", "std", "per_split"} and 0 <= m["mca"]["mean"] <= 1
    assert list(m["per_class"]) == CLASSES
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in m["per_class"].values())
    assert sum(v["support"] for v in m["per_class"].values()) == 60  # each cell tested once
    conf = m["confusion"]
    assert conf["classes"] == CLASSES and conf["rows"] == "predicted" and conf["columns"] == "true"
    counts, pct = np.array(conf["counts"]), np.array(conf["percent"])
    assert counts.shape == pct.shape == (5, 5) and counts.sum() == 60
    np.testing.assert_allclose(pct.sum(0), 100, atol=0.05)  # columns (true class) sum to 100 %
    hist = _json(grouped_run / "history.json")
    assert m["reconstruction_mse"] == pytest.approx(min(h["val_loss"] for h in hist["autoencoder"]))
    assert m["preset"] == "tiny" and m["dataset"] == "synthetic:12"


def test_predictions_csv(grouped_run):
    rows = _csv(grouped_run / "predictions.csv")
    header, body = rows[0], rows[1:]
    for col in ("id", "true", "predicted"):
        assert col in header
    assert header[-5:] == [f"p_{c}" for c in CLASSES]
    assert len(body) == 60
    ids = [r[header.index("id")] for r in body]
    assert len(set(ids)) == 60  # every cell predicted once, in its held-out fold
    proba = np.array([[float(v) for v in r[-5:]] for r in body])
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-3)
    pred = [r[header.index("predicted")] for r in body]
    assert pred == [CLASSES[i] for i in proba.argmax(1)]
    assert {r[header.index("true")] for r in body} == set(CLASSES)
    m = _json(grouped_run / "metrics.json")
    correct = sum(r[header.index("true")] == r[header.index("predicted")] for r in body)
    assert np.trace(np.array(m["confusion"]["counts"])) == correct


def test_each_test_specimen_is_called_from_its_cells_predictions(grouped_run):
    rows = list(csv.DictReader(open(grouped_run / "predictions.csv", newline="")))
    assert all(r["specimen"] for r in rows)
    m = _json(grouped_run / "metrics.json")
    per_split = {}
    for split in m["accuracy"]["per_split"]:
        by = {}
        for r in rows:
            if r["split"] == split:
                by.setdefault(r["specimen"], []).append(r)
        right = []
        for cells in by.values():  # the most frequent call (ties to the higher mean probability) vs the label
            calls = [r["predicted"] for r in cells]
            mean = {c: np.mean([float(r["p_" + c]) for r in cells]) for c in CLASSES}
            call = max(CLASSES, key=lambda c: (calls.count(c), mean[c]))
            label = max(CLASSES, key=lambda c: [r["true"] for r in cells].count(c))
            right.append(call == label)
        per_split[split] = np.mean(right)
        assert m["specimens"]["n"][split] == len(by) == 4  # 20 specimens, 5 folds
    assert m["specimens"]["accuracy"]["per_split"] == pytest.approx(per_split)
    assert m["specimens"]["accuracy"]["mean"] == pytest.approx(np.mean(list(per_split.values())))
    md = (grouped_run / "report.md").read_text()
    assert "**Specimen level**" in md and f"**{m['specimens']['accuracy']['mean']:.4f} ± " in md


def test_features_and_their_ids(grouped_run):
    feats = np.load(grouped_run / "features.npy")
    ids = _csv(grouped_run / "features_ids.csv")
    assert ids[0] == ["row", "id", "label"]
    assert feats.shape == (len(ids) - 1, PRESETS["tiny"].latent) and feats.dtype == np.float32
    assert [int(r[0]) for r in ids[1:]] == list(range(60))
    pred_ids = {r[1] for r in _csv(grouped_run / "predictions.csv")[1:]}
    assert {r[1] for r in ids[1:]} == pred_ids
    assert {r[2] for r in ids[1:]} == set(CLASSES)


def test_report_names_protocol_preset_and_dataset(grouped_run):
    md = (grouped_run / "report.md").read_text()
    assert "grouped" in md and "`tiny`" in md and "synthetic:12" in md
    assert "fold-5" in md and "mean ± std" in md
    assert "autoencoder was trained, without labels, on images that include the held-out" in md
    assert (
        "DCAE features (1024 values from Conv 5; the autoencoder with its own classifiers) + fully connected "
        "classifier 1024-250-50-5" in md
    )
    assert "## Departures from the paper's method" in md and "`ae_augment`" not in md  # tiny trains as the paper
    # ... but smaller and with its own schedule, which the report states (it had said "None")
    assert "None of the method's" in md and "- `size` = 32 (preset `paper`: 224)" in md
    assert "- `ae_epochs` = 2 (preset `paper`: 30)" in md  # GROUPED's --set ae_epochs=2
    page = (grouped_run / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "grouped" in page and "tiny" in page
    assert page.count("data:image/png;base64,") == 3  # the three figures, embedded


def test_report_names_each_departure_from_the_paper(two_runs):
    md = (two_runs / "b" / "report.md").read_text()  # hidden= and tta=true
    assert "a linear softmax classifier 1024-5" in md
    assert "- `hidden` = [] (preset `paper`: [250, 50])" in md and "- `tta` = True (preset `paper`: False)" in md
    assert "ablation" in md
    from hep2.pipeline.report import levers

    assert levers({"ae_rotation": 45.0, "ae_zoom": 0.1, "tta": False}) == [
        "- `ae_rotation` = 45.0 (preset `paper`: 0.0)",
        "- `ae_zoom` = 0.1 (preset `paper`: 0.0)",
    ]


def test_saved_model_reproduces_the_run_features(grouped_run, cache):
    """`hep2 predict`'s pipeline preprocesses files as the run did: its probabilities for the
    run's own images equal the saved classifier applied to the run's features.npy."""
    p = Predictor(grouped_run)
    assert p.classes == CLASSES and p.config.name == "tiny" and p.config.size == 32
    root = next((cache / "synthetic").glob("pc12-*"))
    ids = [r[1] for r in _csv(grouped_run / "features_ids.csv")[1:7]]
    rows, bad = p.predict_files([root / i for i in ids])
    assert bad == [] and [r[0] for r in rows] == [root / i for i in ids]
    feats = torch.from_numpy(np.load(grouped_run / "features.npy")[:6])
    expected = p.classifier.predict_proba(feats.numpy())
    # a run on a GPU computed its features in TF32 (10-bit mantissa); a loaded model predicts in fp32
    np.testing.assert_allclose(
        np.stack([r[2] for r in rows]), expected, rtol=0, atol=1e-3 if torch.cuda.is_available() else 1e-5
    )


# ------------------------------------------------------------------------------ resume and refusals


def test_existing_run_folder_is_refused_without_resume(grouped_run, capsys):
    before = (grouped_run / "metrics.json").read_bytes()
    assert main(["run", *GROUPED, "--out", str(grouped_run)]) == 2
    err = capsys.readouterr().err
    assert str(grouped_run) in err and "--resume" in err and "Traceback" not in err
    assert (grouped_run / "metrics.json").read_bytes() == before


def test_resume_of_a_finished_run(grouped_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(grouped_run, out)
    assert main(["run", *GROUPED, "--out", str(out), "--resume"]) == 0
    assert _without_times(_json(out / "metrics.json")) == _without_times(_json(grouped_run / "metrics.json"))
    assert (out / "predictions.csv").read_bytes() == (grouped_run / "predictions.csv").read_bytes()
    assert _same_weights(_dcae_state(out), _dcae_state(grouped_run))


def test_resume_of_a_folder_made_before_a_setting_existed(grouped_run, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(grouped_run, out)
    config = _json(out / "config.json")
    del config["preset"]["ae_mask"], config["preset"]["checkpoint_minutes"]  # added in later versions
    (out / "config.json").write_text(json.dumps(config))
    assert main(["run", *GROUPED, "--out", str(out), "--resume", "--set", "checkpoint_minutes=5"]) == 0
    assert _without_times(_json(out / "metrics.json")) == _without_times(_json(grouped_run / "metrics.json"))


def test_resume_with_other_settings_is_refused(grouped_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(grouped_run, out)
    args = [a if a != "ae_epochs=2" else "ae_epochs=3" for a in GROUPED]
    assert main(["run", *args, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "ae_epochs: 2 -> 3" in err and "--set ae_epochs=2" in err


def test_resume_names_another_method_and_refuses_folders_no_run_made(grouped_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(grouped_run, out)
    assert main(["run", *GROUPED, "--method", "shape-index", "--out", str(out), "--resume"]) == 2
    assert "method: 'dcae-mlp' -> 'shape-index'" in capsys.readouterr().err
    # a folder of images is not a run to continue: nothing is written into it
    images = tmp_path / "images"
    (images / "homogeneous").mkdir(parents=True)
    (images / "homogeneous" / "a.png").write_bytes(b"x")
    assert main(["run", *GROUPED, "--out", str(images), "--resume"]) == 2
    assert "holds files but no config.json" in capsys.readouterr().err
    assert sorted(p.name for p in images.rglob("*")) == ["a.png", "homogeneous"]
    (tmp_path / "a-file").write_text("x")
    assert main(["run", *GROUPED, "--out", str(tmp_path / "a-file")]) == 2
    assert f"--out {tmp_path / 'a-file'} is a file" in capsys.readouterr().err
    # nor is a run folder a comparison to continue
    assert main(["compare", *GROUPED, "--methods", "shape-index", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert (
        "is not a folder of `hep2 compare` (it holds checkpoints, config.json" in err
        and not (out / "shape-index").exists()
    )
    assert (
        main(["compare", *GROUPED, "--methods", "shape-index", "lbp-svm", "shape-index", "--out", str(tmp_path / "c")])
        == 2
    )
    assert "--methods names shape-index more than once" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_a_run_whose_checkpoints_cannot_fit_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))  # 1 MB free
    out = tmp_path / "small-disk"
    assert main(["run", *GROUPED, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "GB free" in err and "choose --out on another disk" in err and "Traceback" not in err
    assert not out.exists()  # nothing written
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 10**12))
    from hep2.pipeline.runfolder import check_disk_space
    from hep2.presets import get_preset

    check_disk_space(out, get_preset("paper"))  # 23 GB fit on a 1 TB disk: no error


def test_a_full_disk_is_a_clear_error_and_the_run_resumes(grouped_run, tmp_path, monkeypatch, capsys):
    import hep2.training as training_mod

    out = tmp_path / "full"
    real_write, calls = training_mod.atomic_write_bytes, []

    def full_after_one(path, data):  # the first checkpoint fits, then the disk is full
        calls.append(path)
        if len(calls) > 2:
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(training_mod, "atomic_write_bytes", full_after_one)
    assert main(["run", *GROUPED, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert load_checkpoint(out / "checkpoints/dcae-mlp.pt")["epoch"] == 1  # whole, and resumable
    monkeypatch.setattr(training_mod, "atomic_write_bytes", real_write)
    assert main(["run", *GROUPED, "--out", str(out), "--resume"]) == 0
    assert _without_times(_json(out / "metrics.json")) == _without_times(_json(grouped_run / "metrics.json"))


def test_interrupted_run_resumes_to_the_uninterrupted_result(grouped_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "killed"
    real_fit = estimators_mod.fit

    def interrupted(*a, **kw):
        def stop(epoch):
            if kw.get("desc") == "autoencoder" and epoch == 1:
                raise KeyboardInterrupt

        return real_fit(*a, **(kw | {"on_epoch_end": stop}))

    monkeypatch.setattr(estimators_mod, "fit", interrupted)
    assert main(["run", *GROUPED, "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints/dcae-mlp.pt")["epoch"] == 1
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(estimators_mod, "fit", real_fit)
    assert main(["run", *GROUPED, "--out", str(out), "--resume"]) == 0
    assert _same_weights(_dcae_state(out), _dcae_state(grouped_run))
    assert _without_times(_json(out / "metrics.json")) == _without_times(_json(grouped_run / "metrics.json"))


# ------------------------------------------------------------------------------ other protocols


def test_cv_on_a_named_subset(split_folder, tmp_path):
    out = tmp_path / "cv"
    assert (
        main(
            [
                "run",
                f"folder:{split_folder}",
                "--protocol",
                "cv",
                "--subset",
                "test",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=1",
                "--set",
                "mlp_epochs=5",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config, m = _json(out / "config.json"), _json(out / "metrics.json")
    assert config["protocol"] == "cv" and config["subset"] == "test"
    assert config["autoencoder_saw_test_images"] is True
    assert m["protocol"] == "cv" and len(m["accuracy"]["per_split"]) == 5
    assert "specimens" not in m  # cells of one specimen on both sides: no specimen-level figure
    ids = [r[1] for r in _csv(out / "predictions.csv")[1:]]
    assert len(ids) == 30 and all(i.startswith("test/") for i in ids)
    md = (out / "report.md").read_text()
    assert "subset `test`" in md and "cell-level" in md and "held-out" in md


def test_skip_bad_leaves_unreadable_images_out(split_folder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(split_folder, data)
    broken = data / "train" / "homogeneous" / "zz_broken.png"
    broken.write_text("not an image")
    args = [
        "run",
        f"folder:{data}",
        "--protocol",
        "cv",
        "--preset",
        "tiny",
        "--set",
        "ae_epochs=1",
        "--set",
        "mlp_epochs=5",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 2
    assert str(broken) in capsys.readouterr().err
    out = tmp_path / "skip"
    assert main([*args, "--out", str(out), "--skip-bad"]) == 0
    data_json = _json(out / "data.json")
    assert data_json["skipped"]["count"] == 1 and str(broken) in data_json["skipped"]["files"][0]
    ids = [r[1] for r in _csv(out / "predictions.csv")[1:]]
    assert len(ids) == 30 and all(i.startswith("train/") for i in ids)  # default subset: train
    assert "train/homogeneous/zz_broken.png" not in ids
    assert np.load(out / "features.npy").shape[0] == 30


def test_unknown_subset_is_a_clear_error(split_folder, tmp_path, capsys):
    assert (
        main(
            [
                "run",
                f"folder:{split_folder}",
                "--protocol",
                "cv",
                "--subset",
                "val",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--subset 'val'" in err and "train" in err and "test" in err


def test_grouped_without_specimens_is_a_clear_error(split_folder, tmp_path, capsys):
    assert (
        main(
            [
                "run",
                f"folder:{split_folder}",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "grouped" in err and "specimen" in err and "specimens.csv" in err and "Traceback" not in err


def test_grouped_with_fewer_cells_per_class_than_folds_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["run", "synthetic:3", "--protocol", "grouped", "--preset", "tiny", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "grouped with 5 folds needs at least 5 cells per class" in err
    assert "homogeneous (3), coarse_speckled (3), fine_speckled (3), nucleolar (3), centromere (3) have fewer" in err
    assert "cv_folds" in err and "Traceback" not in err and not out.exists()


def test_a_misspelt_class_a_cell_without_specimen_and_a_loose_image_are_named(tmp_path, capsys):
    """Each names the class, cell or file at fault: data summary lists them, a run warns or stops."""
    root = tmp_path / "syn"
    assert main(["data", "make-synthetic", str(root), "--per-class", "6", "--specimens", "6"]) == 0
    one = next((root / "homogeneous").iterdir())
    (root / "speckeld").mkdir()
    shutil.copy(one, root / "speckeld" / "typo.png")  # a label with a typo: a class of its own
    shutil.copy(one, root / "loose.png")  # outside every class folder
    capsys.readouterr()
    assert main(["data", "summary", f"folder:{root}", "--format", "json"]) == 0
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any("class speckeld (1) has fewer than 5 cells" in p and "misspelt" in p for p in problems), problems
    assert any("1 images in" in p and "(first: loose.png)" in p for p in problems), problems
    assert any("1 of 31 images have no row in" in p and "speckeld/typo.png" in p for p in problems), problems
    assert (
        main(["run", f"folder:{root}", "--protocol", "cv", "--preset", "tiny", "--quiet", "--out", str(tmp_path / "a")])
        == 2
    )
    err = capsys.readouterr().err
    assert "hep2: warning: 1 images in" in err and "speckeld (1) has fewer" in err and "misspelt class name" in err
    shutil.rmtree(root / "speckeld")
    (root / "homogeneous" / "extra.png").write_bytes(one.read_bytes())  # no row in specimens.csv
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "1 of its 31 cells have none (first: homogeneous/extra.png)" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--protocol",
                "cv",
                "--ae-on-test",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "--ae-on-test is for --protocol official" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_blocked_holds_out_a_contiguous_id_run_of_every_class(split_folder, tmp_path, capsys):
    from hep2.data import open_dataset
    from hep2.pipeline.evaluation import _natural, protocol_splits

    cells = open_dataset(f"folder:{split_folder}")
    pool = cells.subsets["train"]
    splits, ae_idx = protocol_splits(cells, "blocked", subset="train", folds=3)
    assert len(splits) == 3 and sorted(ae_idx) == sorted(pool)
    held = np.concatenate([b for _, _, b in splits])
    assert sorted(held) == sorted(pool)  # every cell held out exactly once
    for _, a, b in splits:
        assert not set(a) & set(b) and len(a) + len(b) == len(pool)
        for k in range(len(cells.classes)):
            order = sorted((i for i in pool if cells.y[i] == k), key=lambda i: _natural(cells.cells[i].id))
            pos = sorted(order.index(i) for i in b if cells.y[i] == k)
            assert len(pos) == 2 and pos == list(range(pos[0], pos[0] + len(pos)))  # 6 cells, 3 blocks of 2
    out = tmp_path / "blocked"
    assert (
        main(
            [
                "run",
                f"folder:{split_folder}",
                "--protocol",
                "blocked",
                "--method",
                "lbp-svm",
                "--preset",
                "tiny",
                "--set",
                "cv_folds=3",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = _json(out / "metrics.json")
    assert m["protocol"] == "blocked" and len(m["accuracy"]["per_split"]) == 3
    assert "contiguous ID blocks" in (out / "report.md").read_text()
    # data with specimen IDs: hold out whole specimens instead
    assert (
        main(
            ["run", "synthetic:6", "--protocol", "blocked", "--preset", "tiny", "--quiet", "--out", str(tmp_path / "x")]
        )
        == 2
    )
    assert "use --protocol grouped" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_official_on_a_set_without_official_splits_is_a_clear_error(cache, tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "synthetic:12",
                "--protocol",
                "official",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "needs a dataset with a test set apart from its training set" in err and "synthetic:12" in err
    assert "use --protocol grouped (or cv)" in err


def test_official_on_a_layout_with_its_own_test_set(split_folder, tmp_path, capsys):
    """A lab's train/ and test/ folders: trained on train/, tested once on test/, with specimen-level figures
    where specimens.csv names them, and a warning when a specimen sits on both sides."""
    root = tmp_path / "data"
    shutil.copytree(split_folder, root)
    rows = ["path,specimen"] + [
        f"{s}/{p.relative_to(root / s).as_posix()},{s}-{p.name.split('_')[0]}"
        for s in ("train", "test")
        for p in sorted((root / s).rglob("*.png"))
    ]
    (root / "specimens.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--protocol",
                "official",
                "--method",
                "shape-index",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = _json(out / "metrics.json")
    assert list(m["accuracy"]["per_split"]) == ["train/ -> test/"] and "full" not in m
    assert m["protocol_description"].startswith("the dataset's own test set")
    preds = _csv(out / "predictions.csv")
    ids = [r[1] for r in preds[1:]]
    assert len(ids) == 30 and all(i.startswith("test/") for i in ids)
    assert m["specimens"]["n"] == {"train/ -> test/": 5}
    assert "not specimen-disjoint" not in capsys.readouterr().err
    # the same specimen names on both sides: said
    (root / "specimens.csv").write_text(
        "\n".join(r.replace("train-", "x-").replace("test-", "x-") for r in rows) + "\n"
    )
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--protocol",
                "official",
                "--method",
                "shape-index",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(tmp_path / "run2"),
            ]
        )
        == 0
    )
    assert "5 specimens have cells in both train/ and test/ (first: x-s01)" in capsys.readouterr().err
    assert (
        "> **The data**: 5 specimens have cells in both train/ and test/"
        in (tmp_path / "run2" / "report.md").read_text()
    )


def test_official_on_snphep2(snphep2_root, cache, tmp_path):
    out = tmp_path / "official"
    assert (
        main(
            [
                "run",
                f"snphep2:{snphep2_root}",
                "--protocol",
                "official",
                "--preset",
                "tiny",
                "--set",
                "ae_epochs=1",
                "--set",
                "mlp_epochs=5",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m, config = _json(out / "metrics.json"), _json(out / "config.json")
    assert m["protocol"] == "official"
    assert list(m["accuracy"]["per_split"]) == [f"split-50-{k}" for k in range(1, 6)]
    assert 0 <= m["accuracy"]["std"] and all(0 <= v <= 1 for v in m["accuracy"]["per_split"].values())
    assert 0 <= m["full"]["accuracy"] <= 1 and sum(v["support"] for v in m["full"]["per_class"].values()) == 979
    assert config["autoencoder_saw_test_images"] is False and config["subset"] is None
    assert m["autoencoder_saw_test_images"] is False
    # the autoencoder trained on train/ only: 905 cells less its held-out tenth
    assert load_checkpoint(out / "checkpoints/dcae-mlp.pt")["n_train"] == 905 - round(905 * 0.1)
    rows = _csv(out / "predictions.csv")[1:]
    assert len(rows) == 5 * 490 + 979  # each split's test cells, then `full`: all of test/
    full = [r for r in rows if r[0] == "full"]
    assert len(full) == 979 and all(r[1].startswith("test/") for r in full)
    assert np.mean([r[2] == r[3] for r in full]) == pytest.approx(m["full"]["accuracy"])
    # features for every cell of train/ and test/ (`full` tests on all of test/)
    assert np.load(out / "features.npy").shape[0] == len(_csv(out / "features_ids.csv")) - 1 == 1884
    assert "no test image was seen" in (out / "report.md").read_text()
    assert "88.08%" in (out / "report.md").read_text()


# ------------------------------------------------------------------------------ hep2 predict


@pytest.fixture
def new_images(cache, tmp_path):
    root = next((cache / "synthetic").glob("pc12-*"))
    folder = tmp_path / "new"
    folder.mkdir()
    for c in ("centromere", "nucleolar"):
        for f in sorted((root / c).iterdir())[:2]:
            shutil.copy(f, folder / f"{c}_{f.name}")
    return folder


def test_predict_a_folder_to_csv(grouped_run, new_images, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(grouped_run), str(new_images), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 4 predictions" in printed and "centromere_" in printed
    rows = _csv(out)
    assert rows[0] == ["path", "predicted"] + [f"p_{c}" for c in CLASSES]
    assert len(rows) == 5
    proba = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-3)
    assert [r[1] for r in rows[1:]] == [CLASSES[i] for i in proba.argmax(1)]
    assert sorted(r[0] for r in rows[1:]) == sorted(str(p) for p in new_images.iterdir())
    # a single file, and the model/ subfolder, give the same answer
    one = sorted(new_images.iterdir())[0]
    assert main(["predict", "--model", str(grouped_run / "model"), str(one), "--out", str(tmp_path / "one.csv")]) == 0
    single = _csv(tmp_path / "one.csv")[1]
    same = [r for r in rows[1:] if r[0] == str(one)][0]
    assert single[:2] == same[:2]
    np.testing.assert_allclose([float(v) for v in single[2:]], [float(v) for v in same[2:]], atol=2e-5)


def test_predict_summarises_each_folder_of_cells(grouped_run, new_images, tmp_path, capsys):
    wells = tmp_path / "plate"
    for i, f in enumerate(sorted(new_images.iterdir())):  # 2 centromere + 2 nucleolar cells a well
        (wells / f"well{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, wells / f"well{i % 2}" / f.name)
    out, summary = tmp_path / "cells.csv", tmp_path / "wells.csv"
    assert main(["predict", "--model", str(grouped_run), str(wells), "--out", str(out), "--summary", str(summary)]) == 0
    printed = capsys.readouterr().out
    assert "by folder (one well, one specimen)" in printed and "wrote 2 folder summaries" in printed
    cells = list(csv.DictReader(open(out, newline="")))
    rows = list(csv.DictReader(open(summary, newline="")))
    assert [r["folder"] for r in rows] == [str(wells / "well0"), str(wells / "well1")]
    for r in rows:
        mine = [c for c in cells if str(Path(c["path"]).parent) == r["folder"]]
        calls = [c["predicted"] for c in mine]
        assert int(r["cells"]) == len(mine) == 2
        assert [int(r[f"n_{c}"]) for c in CLASSES] == [calls.count(c) for c in CLASSES]
        mean = {c: np.mean([float(x[f"p_{c}"]) for x in mine]) for c in CLASSES}
        assert [float(r[f"p_{c}"]) for c in CLASSES] == pytest.approx(list(mean.values()), abs=1e-4)
        assert r["pattern"] == max(CLASSES, key=lambda c: (calls.count(c), mean[c]))
        assert float(r["agreement"]) == calls.count(r["pattern"]) / 2
        assert f"{r['folder']}      2  {r['pattern']}" in printed
    # one image alone: no table unless asked for
    one = sorted(new_images.iterdir())[0]
    assert main(["predict", "--model", str(grouped_run), str(one)]) == 0
    assert "by folder" not in capsys.readouterr().out
    assert main(["predict", "--model", str(grouped_run), str(one), "--summary", str(tmp_path)]) == 2
    assert f"--summary {tmp_path} is a folder: give the CSV file to write" in capsys.readouterr().err
    assert main(["predict", "--model", str(grouped_run), str(one), "--summary", str(out), "--out", str(out)]) == 2
    assert "--out and --summary name the same file" in capsys.readouterr().err


def test_predict_reads_each_cells_mask_as_training_did(tmp_path, capsys):
    from PIL import Image

    from hep2.data import load_images, open_dataset

    root = make_synthetic(tmp_path / "masked", per_class=10, specimens=10, seed=5)
    for f in sorted(root.rglob("*.png")):
        m = np.zeros(np.asarray(Image.open(f)).shape, np.uint8)
        m[: m.shape[0] // 2] = 255  # the top half of each cell
        Image.fromarray(m).save(f.with_name(f.stem + "_mask.png"))
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                f"folder:{root}",
                "--method",
                "shape-index",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pred = Predictor(out)
    images, cells = load_images(open_dataset(f"folder:{root}"), pred.prep)
    files = [c.path for c in cells.cells]
    np.testing.assert_array_equal(pred.load_files(files)[0], images)  # masked as in training
    rows, _ = pred.predict_files(files)
    np.testing.assert_allclose(np.stack([r[2] for r in rows]), pred.predict_images(images), atol=1e-6)
    # the masks are not cells, in a folder or given beside their images by a shell glob
    one = root / "centromere"
    (one / "._s01_0001.png").write_bytes(b"macOS resource fork")  # hidden and system files, a folder
    (one / "755.png").mkdir()  # named like an image: not cells
    assert (
        main(
            [
                "predict",
                "--model",
                str(out),
                str(one),
                *map(str, sorted(one.glob("s*.png"))),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    listed = [r[0] for r in _csv(tmp_path / "p.csv")[1:]]
    assert len(listed) == 2 * 10 and not any(p.endswith("_mask.png") or "._" in p or "755" in p for p in listed)
    # a cell without its mask, for this model trained on masked cells: classified unmasked, and said so
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(files[0], lone / files[0].name)
    capsys.readouterr()
    assert main(["predict", "--model", str(out), str(lone)]) == 0
    assert (
        "hep2: warning: 1 of 1 cells have no mask beside them (NAME_mask.EXT) and are classified unmasked"
        in capsys.readouterr().err
    )
    # a mask given without its cell is named, not dropped (nothing was classified, and it said so)
    first = sorted(one.glob("*_mask.png"))[0]
    capsys.readouterr()
    assert main(["predict", "--model", str(out), str(first)]) == 2
    assert f"{first} is the mask of a cell image beside it, not a cell" in capsys.readouterr().err
    # a file that is not an image stops before any work, or --skip-bad lists it
    capsys.readouterr()
    assert main(["predict", "--model", str(out), str(root / "specimens.csv"), str(one)]) == 2
    assert f"{root / 'specimens.csv'} is not a cell image" in capsys.readouterr().err
    assert main(["predict", "--model", str(out), str(root / "specimens.csv"), str(one), "--skip-bad"]) == 0
    assert f"skipped: {root / 'specimens.csv'} is not a cell image" in capsys.readouterr().err


def test_run_warns_of_colour_cells_that_mix_two_stains(tmp_path, capsys):
    from PIL import Image

    root = make_synthetic(tmp_path / "rgb", per_class=6, specimens=5, seed=2)
    for f in sorted(root.rglob("*.png")):
        g = np.asarray(Image.open(f))
        Image.fromarray(np.stack([np.full_like(g, 120), g, np.zeros_like(g)], -1)).save(f)  # a red counterstain
    args = ["run", f"folder:{root}", "--method", "shape-index", "--protocol", "cv", "--preset", "tiny", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "mean")]) == 0
    err = capsys.readouterr().err
    assert "hep2: warning: 20 colour images among 20 cells sampled: their signal is red 0." in err
    assert "--set channel=green" in err and "--set channel=green" in (tmp_path / "mean" / "report.md").read_text()
    assert main([*args, "--set", "channel=green", "--out", str(tmp_path / "green")]) == 0
    assert "colour" not in capsys.readouterr().err


def test_a_model_trained_without_masks_does_not_apply_them(grouped_run, new_images, capsys):
    from PIL import Image

    pred = Predictor(grouped_run)
    assert pred.masks is False
    files = sorted(new_images.iterdir())
    before = np.stack([r[2] for r in pred.predict_files(files)[0]])
    shape = np.asarray(Image.open(files[0])).shape
    Image.fromarray(
        np.pad(np.full((shape[0] // 2, shape[1]), 255, np.uint8), ((0, shape[0] - shape[0] // 2), (0, 0)))
    ).save(files[0].with_name(files[0].stem + "_mask.png"))
    np.testing.assert_array_equal(np.stack([r[2] for r in pred.predict_files(files)[0]]), before)  # as in training
    assert main(["predict", "--model", str(grouped_run), str(new_images)]) == 0
    assert (
        "1 of 4 cells have a mask beside them, which is not applied: the model was trained on cells without "
        "masks" in capsys.readouterr().err
    )


def test_predict_bad_file_fails_naming_it_and_skip_bad_goes_on(grouped_run, new_images, tmp_path, capsys):
    bad = new_images / "broken.png"
    bad.write_text("this is not an image")
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(grouped_run), str(new_images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "--skip-bad" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["predict", "--model", str(grouped_run), str(new_images), "--out", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and str(bad) in captured.err
    assert len(_csv(out)) == 5 and str(bad) not in out.read_text()
    # nothing readable at all is an error, not an empty table
    assert main(["predict", "--model", str(grouped_run), str(bad), "--skip-bad"]) == 2
    assert "none of the 1 files" in capsys.readouterr().err


def test_predict_with_a_folder_that_holds_no_model(grouped_run, tmp_path, new_images, capsys):
    assert main(["predict", "--model", str(tmp_path / "runs" / "mine"), str(new_images)]) == 2
    assert f"--model {tmp_path / 'runs' / 'mine'} does not exist" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), str(new_images)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} holds no model (model/pipeline.pt)" in err and "hep2 run" in err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(grouped_run / "config.json", unfinished)
    assert main(["predict", "--model", str(unfinished), str(new_images)]) == 2
    assert "its run did not finish; continue it with `hep2 run ... --resume`" in capsys.readouterr().err
    one = sorted(new_images.iterdir())[0]
    assert main(["predict", "--model", str(one), str(one)]) == 2
    assert f"--model {one} is a file, not a model" in capsys.readouterr().err
    damaged = tmp_path / "damaged" / "model"
    damaged.mkdir(parents=True)
    (damaged / "pipeline.pt").write_bytes(b"not a model")
    assert main(["predict", "--model", str(damaged.parent), str(one)]) == 2
    err = capsys.readouterr().err
    assert "damaged or from another version; train the model again with `hep2 run`" in err and "delete" not in err
    # the model file itself is taken for its run folder
    assert main(["predict", "--model", str(grouped_run / "model" / "pipeline.pt"), str(one)]) == 0
    assert one.name in capsys.readouterr().out


def test_predict_missing_input_is_a_clear_error(grouped_run, tmp_path, capsys):
    assert main(["predict", "--model", str(grouped_run), str(tmp_path / "nope.png")]) == 2
    assert "nope.png does not exist" in capsys.readouterr().err
    assert main(["predict", "--model", str(grouped_run), str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder: give the CSV file to write" in capsys.readouterr().err


def test_a_missing_gpu_is_a_clear_error_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["run", "synthetic:6", "--preset", "tiny", "--device", "cuda", "--out", str(out)]) == 2
    assert "no GPU" in capsys.readouterr().err and not out.exists()


def _benchmark(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / f"benchmarks/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_inner_validation_intensity_probe_on_snphep2(tmp_path, capsys, snphep2_root):
    """--intensity: train on train/'s positive-intensity cells, test on its intermediate ones and back,
    by the intensities hep2's reader gives (a real-data test: the reader needs the SNPHEp-2 layout)."""
    from hep2.data import open_dataset

    iv = _benchmark("inner_validation")
    cells = [c for c in open_dataset(f"snphep2:{snphep2_root}").cells if c.split == "train"]
    ids = np.array([c.id for c in cells])
    labels = np.array([c.label for c in cells])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(cells), 6)).astype(np.float32)
    X[np.arange(len(cells)), np.unique(labels, return_inverse=True)[1]] += 3  # a signal per class
    np.save(tmp_path / "features.npy", X)
    with open(tmp_path / "features_ids.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "id", "label"])
        w.writerows([i, c, lab] for i, (c, lab) in enumerate(zip(ids, labels)))
    assert iv.main([str(tmp_path), "--heads", "logreg", "--blocks", "5", "--intensity", str(snphep2_root)]) == 0
    assert float(capsys.readouterr().out.split("pos<->int ")[1].split()[0]) > 0.5  # chance is 1/5
    (hi, lo), back = iv.intensity_folds(snphep2_root, ids)
    assert set(ids[hi]) == {c.id for c in cells if c.intensity == "positive"}
    assert set(ids[lo]) == {c.id for c in cells if c.intensity == "intermediate"}
    assert len(hi) > 100 and len(lo) > 100 and [list(v) for v in back] == [list(lo), list(hi)]
    with pytest.raises(SystemExit, match="--intensity .*nowhere"):
        iv.intensity_folds(tmp_path / "nowhere", ids)


def test_inner_validation_blocks_are_contiguous_id_runs_per_class(tmp_path, capsys):
    from hep2.pipeline.evaluation import blocks

    iv = _benchmark("inner_validation")
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 40)
    ids = rng.permutation(120) + 1
    g = blocks(y, ids)
    for c in "abc":
        order = np.argsort(ids[y == c])
        assert list(g[y == c][order]) == sorted(g[y == c]) and set(g[y == c]) == {0, 1, 2, 3}
        assert all((g[y == c] == b).sum() == 10 for b in range(4))
    # a fake run folder: train/ rows carry the signal, test/ rows must be ignored
    X = rng.normal(size=(150, 6)).astype(np.float32)
    labels = np.concatenate([y, np.repeat("a", 30)])
    X[:120, 0] += 3 * (labels[:120] == "a") - 3 * (labels[:120] == "c")
    np.save(tmp_path / "features.npy", X)
    with open(tmp_path / "features_ids.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "id", "label"])
        for i in range(150):
            w.writerow([i, f"train/{ids[i]:03d}" if i < 120 else f"test/{i:03d}", labels[i]])
    assert iv.main([str(tmp_path), "--heads", "logreg"]) == 0
    out = capsys.readouterr().out
    assert "120 train/ cells x 6 features" in out
    assert float(out.split("blocked ")[1].split()[0]) > 0.5  # chance is 1/3
    with pytest.raises(SystemExit, match="unknown head"):
        iv.main([str(tmp_path), "--heads", "forest"])
    # a run whose classifier trained on each flip / rotation (tta_samples) holds 8 views per cell
    (tmp_path / "config.json").write_text('{"preset": {"tta_samples": true}}')
    with pytest.raises(SystemExit, match="8 views per cell .*mlp"):
        iv.main([str(tmp_path), "--heads", "logreg"])


@pytest.fixture(scope="module")
def two_runs(cache, tmp_path_factory):
    """Two tiny cv runs on the same splits: the paper's classifier, and a linear one with tta."""
    root = tmp_path_factory.mktemp("pair")
    base = [
        "run",
        "synthetic:6",
        "--protocol",
        "cv",
        "--preset",
        "tiny",
        "--set",
        "ae_epochs=1",
        "--set",
        "mlp_epochs=3",
        "--quiet",
    ]
    assert main([*base, "--out", str(root / "a")]) == 0
    assert main([*base, "--set", "hidden=", "--set", "tta=true", "--out", str(root / "b")]) == 0
    return root


def test_ablation_table_is_built_from_run_folders(two_runs, tmp_path, capsys):
    ablation = _benchmark("ablation")
    out = tmp_path / "ablation.md"
    assert ablation.main([f"plain=,{two_runs / 'a'}", f"linear + tta=,{two_runs / 'b'}", "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 4 and rows[2].startswith("| plain | dcae-mlp / tiny | – | – |")
    for name, row in (("a", rows[2]), ("b", rows[3])):
        m = json.loads((two_runs / name / "metrics.json").read_text())
        assert f"{m['accuracy']['mean']:.4f} ± {m['accuracy']['std']:.4f}" in row and f"{m['mca']['mean']:.4f}" in row
    assert "hidden=[]" in rows[3] and "tta=True" in rows[3]
    with pytest.raises(SystemExit, match="not a finished run folder"):
        ablation.main([f"x=,{tmp_path / 'missing'}"])
    with pytest.raises(SystemExit, match="expected the official run there"):
        ablation.main([f"x={two_runs / 'a'},"])


def test_resnet_method_runs_end_to_end_with_its_epochs_from_the_preset(cache, tmp_path):
    out = tmp_path / "resnet"
    assert (
        main(
            [
                "run",
                "synthetic:6",
                "--method",
                "resnet",
                "--protocol",
                "grouped",
                "--preset",
                "tiny",
                "--set",
                "cnn_epochs=3",
                "--set",
                "cnn_patience=0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "resnet" and m["n_splits"] == 5 and 0 <= m["accuracy"]["mean"] <= 1
    h = json.loads((out / "history.json").read_text())
    assert len(h["classifier"]) == 3  # cnn_epochs=3, no early stop
    rows = list(csv.DictReader(open(out / "predictions.csv", newline="")))
    assert len(rows) == 30 and {r["split"] for r in rows} == {f"fold-{k}" for k in range(1, 6)}


def test_an_unknown_subset_lists_the_ones_there_are(capsys):
    assert main(["run", *GROUPED, "--subset", "tset", "--out", "unused"]) == 2
    assert "--subset 'tset': synthetic:12 has no named subsets: leave --subset out (all)" in capsys.readouterr().err
