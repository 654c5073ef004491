"""Every registered method runs end to end, and MLPHead keeps scikit-learn's estimator contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from hep2.data import open_dataset
from hep2.estimators import MLPHead
from hep2.pipeline.methods import METHODS
from hep2.pipeline.predict import Predictor
from hep2.pipeline.runner import run
from hep2.presets import get_preset

# small enough for seconds a method: 2 epochs of each network
QUICK = {"ae_epochs": 2, "mlp_epochs": 5, "cnn_epochs": 2, "cnn_patience": 0}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_runs_and_its_model_predicts(name, tmp_path):
    out = tmp_path / name
    metrics = run(
        "synthetic:8", protocol="cv", cfg=get_preset("tiny", overrides=QUICK), out=out, method=name, verbose=False
    )
    assert metrics["method"] == name and 0.0 <= metrics["accuracy"]["mean"] <= 1.0
    assert len(metrics["accuracy"]["per_split"]) == 5
    pred = Predictor(out)
    files = [cell.path for cell in open_dataset("synthetic:8").cells[::8]]
    rows, skipped = pred.predict_files(files)
    assert skipped == [] and [r[0] for r in rows] == files
    assert all(r[1] in pred.classes and np.isclose(r[2].sum(), 1.0, atol=1e-4) for r in rows)


# checks that look for scikit-learn's own wording: MLPHead refuses bad input with Hep2Error (a ValueError, the
# project's one error type), whose message names the value and says what to do for a user, not the phrase the
# check searches for
HEP2_ERRORS = "MLPHead's Hep2Error (a ValueError) is worded for users, not with the phrase the check looks for"
EXPECTED_FAILURES = {
    name: HEP2_ERRORS
    for name in (
        "check_n_features_in_after_fitting",
        "check_complex_data",
        "check_classifiers_regression_target",
        "check_supervised_y_2d",
        "check_fit2d_1sample",
        "check_fit2d_predict1d",
        "check_requires_y_none",
    )
} | {
    name: "MLPHead reads dense features only (autoencoder and descriptor features are dense)"
    for name in ("check_estimator_sparse_tag", "check_estimator_sparse_array", "check_estimator_sparse_matrix")
}


@parametrize_with_checks(
    [MLPHead(hidden=(16,), epochs=60, patience=0)], expected_failed_checks=lambda est: EXPECTED_FAILURES
)
def test_mlp_head_follows_the_scikit_learn_estimator_contract(estimator, check):
    check(estimator)
