"""The specimen-level call (a well's dominant pattern) and its figures, on hand-made probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from hep2.pipeline.evaluation import batch_summary, specimen_metrics, split_metrics, summarize_protocol

C = ["a", "b", "c"]


def test_the_dominant_pattern_is_the_most_frequent_call():
    # two cells say b (weakly), one says a (strongly): b is the call, though a has the higher mean probability
    p = np.array([[0.30, 0.40, 0.30], [0.30, 0.40, 0.30], [0.98, 0.01, 0.01]])
    s = batch_summary(p, C)
    assert s["dominant"] == "b" and s["n"] == 3 and s["agreement"] == pytest.approx(2 / 3)
    assert s["counts"] == {"a": 1, "b": 2, "c": 0}
    assert s["mean_probability"] == pytest.approx({"a": 0.5267, "b": 0.27, "c": 0.2033}, abs=1e-3)


def test_a_tie_goes_to_the_higher_mean_probability():
    p = np.array([[0.90, 0.10, 0.0], [0.45, 0.55, 0.0]])  # one call each; a's mean 0.675 beats b's 0.325
    assert batch_summary(p, C)["dominant"] == "a"
    assert batch_summary(p[:, [1, 0, 2]], C)["dominant"] == "b"


def test_each_specimen_is_called_from_its_own_cells_against_its_most_frequent_label():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    spec = ["s1", "s1", "s1", "s2", "s2", "s3", "s3", "s3"]
    p = np.eye(3)[
        [
            0,
            0,
            1,  # s1: 2 of 3 cells right -> a, right
            0,
            0,  # s2: both wrong -> a, wrong
            2,
            2,
            1,
        ]
    ]  # s3: right
    m = specimen_metrics(y, p, spec, C)
    assert m["n"] == 3 and m["accuracy"] == pytest.approx(2 / 3)
    assert m["wrong"] == [{"specimen": "s2", "true": "b", "predicted": "a"}]
    # a specimen whose cells carry two labels is judged on the more frequent one
    assert specimen_metrics(np.array([0, 0, 1]), np.eye(3)[[1, 1, 1]], ["s", "s", "s"], C)["accuracy"] == 0


def test_the_mean_over_splits_is_in_metrics_only_where_every_split_has_one():
    y = np.array([0, 1, 2, 2])
    p = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0, 0.4]])
    with_spec = split_metrics(y, p, C, ["s1", "s2", "s3", "s3"])
    without = split_metrics(y, p, C)
    assert with_spec["accuracy"] == without["accuracy"] == 0.75 and "specimens" not in without
    assert with_spec["specimens"]["accuracy"] == 1.0  # s3: one of two cells right, a tie won by c's mean
    half = split_metrics(y, np.eye(3)[[0, 0, 2, 2]], C, ["s1", "s2", "s3", "s3"])
    m = summarize_protocol("grouped", {"f1": with_spec, "f2": half}, with_spec)
    assert m["specimens"]["accuracy"]["per_split"] == {"f1": 1.0, "f2": pytest.approx(2 / 3)}
    assert m["specimens"]["accuracy"]["mean"] == pytest.approx(5 / 6) and m["specimens"]["n"] == {"f1": 3, "f2": 3}
    assert "specimens" not in summarize_protocol("cv", {"f1": with_spec, "f2": without}, without)
