"""The doctests of src/hep2 cache decoded images into a temporary folder, never into ~/.cache, as the tests do
(tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _doctest_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HEP2_CACHE", str(tmp_path_factory.getbasetemp() / "hep2-doctest-cache"))
