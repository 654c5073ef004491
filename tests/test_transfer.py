"""Several datasets in one run, the pattern tree with ICAP codes, labels at several depths, --protocol transfer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hep2.cli import main
from hep2.data import open_dataset
from hep2.data.patterns import TREE, fold_proba, icap, leaf_sets, shared_depth, with_icap
from hep2.data.synthetic import make_synthetic
from hep2.errors import Hep2Error
from hep2.pipeline.predict import Predictor, full_proba
from hep2.pipeline.tree import Scoring, TreeClassifier


def test_tree_codes_and_parents():
    assert icap("homogeneous") == "AC-1" and icap("centromere") == "AC-3" and icap("golgi") == "AC-22"
    assert with_icap("coarse_speckled") == "coarse_speckled (AC-5)" and with_icap("unknown") == "unknown"
    for name, (code, parent) in TREE.items():  # every parent is a node, every node has a code
        assert code.startswith("AC-") and (parent is None or parent in TREE), name
    leaves, allowed = leaf_sets(["speckled", "golgi", "cytoplasmatic", "homogeneous"])
    assert leaves == ["speckled", "golgi", "homogeneous"] and allowed["cytoplasmatic"] == ["golgi"]


def test_shared_depth_folds_children_into_the_parent_the_other_side_names():
    snp = ["homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere"]
    i3a = ["homogeneous", "speckled", "nucleolar", "centromere", "nuclear_membrane", "golgi"]
    fa, fb, shared = shared_depth(snp, i3a)
    assert shared == ["homogeneous", "speckled", "nucleolar", "centromere"]
    assert fa["fine_speckled"] == fa["coarse_speckled"] == "speckled" and fb["golgi"] == "golgi"
    p, names = fold_proba(np.array([[0.1, 0.2, 0.3, 0.4, 0.0]]), snp, fa)
    assert names == ["homogeneous", "speckled", "nucleolar", "centromere"]
    assert p[0].tolist() == pytest.approx([0.1, 0.5, 0.4, 0.0])


def test_scoring_leaves_out_unknown_labels_and_keeps_calls_outside_the_labels_as_errors():
    sc = Scoring.between(["homogeneous", "speckled", "golgi"], ["homogeneous", "fine_speckled", "nucleolar"])
    assert sc.shared == ["homogeneous", "speckled"] and sc.classes == ["homogeneous", "speckled", "golgi"]
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    p, y, keep = sc.apply(proba, ["homogeneous", "speckled", "golgi"], ["homogeneous", "fine_speckled", "nucleolar"])
    assert keep.tolist() == [True, True, False] and y[:2].tolist() == [0, 1]
    assert p.argmax(1)[:2].tolist() == [0, 2]  # the second cell called golgi: an error in the confusion
    assert "nucleolar (4 cells)" in sc.description({"nucleolar": 4})


def test_tree_classifier_learns_the_children_from_parent_labelled_cells():
    rng = np.random.default_rng(0)
    centres = {0: 0.0, 1: 3.0, 2: 6.0}  # homogeneous, fine, coarse
    X = np.concatenate([rng.normal(centres[c], 0.5, (40, 2)) for c in (0, 1, 2, 1, 2)])
    # the first three blocks labelled at the leaves, but only 5 cells of each speckled child; the last two "speckled"
    y = np.array([0] * 40 + [1] * 40 + [2] * 40 + [3] * 80)
    keep = np.r_[np.arange(40), np.arange(40, 45), np.arange(80, 85), np.arange(120, 200)]
    names = ["homogeneous", "fine_speckled", "coarse_speckled", "speckled"]
    clf = TreeClassifier(LogisticRegression(), names).fit(X[keep], y[keep])
    assert clf.classes_.tolist() == [0, 1, 2]  # the leaves only
    truth = np.array([1] * 40 + [2] * 40)  # the speckled cells' hidden children
    assert (clf.predict(X[120:200]) == truth).mean() > 0.95


def test_several_datasets_read_as_one_keep_their_source(tmp_path):
    a = make_synthetic(tmp_path / "a", per_class=4, specimens=10, seed=1)
    both = open_dataset([f"folder:{a}", "synthetic:2"])
    assert both.sources == [f"folder:{a}", "synthetic:2"] and len(both) == 30
    assert both.ids[0].startswith("folder:") and both.specimens[0].startswith("folder:")
    assert len(both.subsets["source:folder"]) == 20 and len(both.subsets["source:synthetic"]) == 10
    with pytest.raises(Hep2Error, match="given twice"):
        open_dataset(["synthetic:2", "synthetic:2"])


def _lab_with_speckled_and_golgi(tmp_path):
    """Another 'lab': synthetic cells of another seed whose fine and coarse speckled cells are labelled only
    speckled, plus a golgi class the source never saw."""
    lab = make_synthetic(tmp_path / "lab", per_class=12, specimens=10, seed=7)
    (lab / "speckled").mkdir()
    for child in ("fine_speckled", "coarse_speckled"):
        for f in (lab / child).iterdir():
            f.rename(lab / "speckled" / f"{child}_{f.name}")
        (lab / child).rmdir()
    shutil.copytree(lab / "nucleolar", lab / "golgi")
    (lab / "specimens.csv").unlink()
    return lab


def test_transfer_protocol_scores_at_the_shared_depth(tmp_path, capsys):
    lab = _lab_with_speckled_and_golgi(tmp_path)
    out = tmp_path / "run"
    args = ["run", "synthetic:30", "--protocol", "transfer", "--target", f"folder:{lab}", "--method", "shape-index"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "transfer" and list(m["accuracy"]["per_split"]) == ["source -> target"]
    assert m["scoring"]["shared"] == ["homogeneous", "speckled", "nucleolar", "centromere"]
    assert m["scoring"]["left_out"] == {"golgi": 12}
    assert m["confusion"]["classes"] == ["homogeneous", "speckled", "nucleolar", "centromere"]
    assert sum(map(sum, m["confusion"]["counts"])) == 60  # 12 each, 24 speckled: the scored target cells
    assert m["accuracy"]["mean"] > 0.5  # the same generator, another seed: it transfers
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header.endswith("p_homogeneous,p_speckled,p_nucleolar,p_centromere")
    config = json.loads((out / "config.json").read_text())
    assert config["target"] == f"folder:{lab}" and config["autoencoder_saw_test_images"] is False


def test_transfer_refuses_a_missing_or_repeated_target(tmp_path, capsys):
    assert main(["run", "synthetic:10", "--protocol", "transfer", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "needs --target" in capsys.readouterr().err
    args = ["run", "synthetic:10", "--protocol", "transfer", "--target", "synthetic:10"]
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "both a source and the target" in capsys.readouterr().err
    assert main(["run", "synthetic:10", "--target", "synthetic:5", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "--target is for --protocol transfer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_one_run_on_two_datasets_with_labels_at_two_depths(tmp_path):
    lab = _lab_with_speckled_and_golgi(tmp_path)
    out = tmp_path / "both"
    args = ["run", "synthetic:12", f"folder:{lab}", "--protocol", "cv", "--method", "shape-index"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # the model learns the leaves (fine, coarse from synthetic:12; golgi from the lab); scored where the labels meet
    assert "speckled" in m["confusion"]["classes"] and "fine_speckled" not in m["confusion"]["classes"]
    assert m["accuracy"]["mean"] > 0.5
    assert list(m["per_source"]) == ["synthetic:12", f"folder:{lab}"]  # each dataset's own figure
    assert m["per_source"]["synthetic:12"]["n"] == 60 and 0 <= m["per_source"][f"folder:{lab}"]["accuracy"] <= 1
    pred = Predictor(out)
    assert {"fine_speckled", "coarse_speckled", "golgi"} <= set(pred.classes)


def test_a_model_trained_under_the_old_snphep2_names_says_so(tmp_path):
    out = tmp_path / "old"
    assert main(["run", "synthetic:6", "--method", "shape-index", "--out", str(out), "--quiet"]) == 0
    assert Predictor(out).naming_note is None
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"dataset": "snphep2:/data/snphep2"}))
    note = Predictor(out).naming_note
    assert note and "homogeneous means SNPHEp-2's label 1" in note


def test_adapt_standardises_each_dataset_by_its_own_cells(tmp_path):
    lab = _lab_with_speckled_and_golgi(tmp_path)
    out = tmp_path / "adapted"
    args = ["run", "synthetic:30", "--protocol", "transfer", "--target", f"folder:{lab}", "--method", "shape-index"]
    assert main([*args, "--set", "adapt=standardize", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["adapt"] == {"method": "standardize", "per_source": {"synthetic:30": 150, f"folder:{lab}": 72}}
    assert m["accuracy"]["mean"] > 0.5
    pred = Predictor(out)
    assert pred.adapts and pred.transductive
    few = sorted((lab / "nucleolar").glob("*.png"))[:4]  # too few to set their own statistics: the training's
    rows, _ = pred.predict_files(few)
    assert len(rows) == 4 and all(np.isclose(r[2].sum(), 1.0, atol=1e-4) for r in rows)
    batch = tmp_path / "well"  # one folder of 36 cells: a batch that sets its own statistics
    batch.mkdir()
    for f in [*(lab / "speckled").glob("*.png"), *(lab / "homogeneous").glob("*.png")]:
        shutil.copy(f, batch / f.name)
    many = sorted(batch.glob("*.png"))
    a, _ = pred.predict_files(many)
    b, _ = pred.predict_files(many[::-1])
    assert [r[1] for r in a] == [r[1] for r in b][::-1]  # a batch's result does not depend on its order
    images, _, _ = pred.load_files(many)
    features = pred.method.transform(images).astype(np.float64)
    with_training_statistics = full_proba(pred.classifier, features, len(pred.classes))
    assert np.abs(np.array([r[2] for r in a]) - with_training_statistics).max() > 1e-3
