"""Shared fixtures: a private image cache, the SNPHEp-2 data folder, and tiny image writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SNPHEP2_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "snphep2"


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hep2-cache")


@pytest.fixture(autouse=True)
def hep2_cache(_session_cache, monkeypatch) -> Path:
    """Every test caches into one temporary folder for the whole test run, never into ~/.cache."""
    monkeypatch.setenv("HEP2_CACHE", str(_session_cache))
    return _session_cache


@pytest.fixture(scope="session")
def synthetic_set(_session_cache):
    """``load(spec, size) -> (images, cells)``: a built-in synthetic set (e.g. "synthetic:6")
    preprocessed at ``size``, generated and cached in the test run's cache folder (for module fixtures)."""
    from hep2.data import load_images, open_dataset
    from hep2.data.images import Preprocess

    def load(spec: str, size: int):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HEP2_CACHE", str(_session_cache))
            return load_images(open_dataset(spec), Preprocess(size=size))

    return load


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tests use one PyTorch thread: the models are tiny, and on a busy 2-core machine a second
    spinning OpenMP thread makes them many times slower (and timings noisy)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def snphep2_root() -> Path:
    """The SNPHEp-2 copy in ../shared/data/snphep2; the test is skipped when it is absent."""
    if not (SNPHEP2_ROOT / "train").is_dir() or not (SNPHEP2_ROOT / "split_information").is_dir():
        pytest.skip(f"SNPHEp-2 data not found at {SNPHEP2_ROOT}")
    return SNPHEP2_ROOT


# ------------------------------------------------------------------------------ tiny images


def cell_array(h: int = 24, w: int = 24, *, seed: int = 0, high: int = 255, dtype=np.uint8) -> np.ndarray:
    """A bright disc on a dark, slightly noisy background: a stand-in for a cell image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 3) ** 2) <= 1
    arr = rng.uniform(0, 0.1, (h, w)) + 0.8 * disc
    return np.clip(arr * high, 0, high).astype(dtype)


def write_png(path, arr: np.ndarray | None = None, **kw) -> Path:
    """An 8-bit grey PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cell_array(**kw) if arr is None else np.asarray(arr, np.uint8)).save(path)
    return path


def write_tiff16(path, arr: np.ndarray | None = None, **kw) -> Path:
    """A 16-bit grey TIFF (tifffile)."""
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cell_array(high=65535, dtype=np.uint16, **kw) if arr is None else np.asarray(arr, np.uint16)
    tifffile.imwrite(path, data)
    return path


def write_jpeg_rgb(path, arr: np.ndarray | None = None, **kw) -> Path:
    """An RGB JPEG (the same grey level in all three channels unless ``arr`` is H x W x 3)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = cell_array(**kw) if arr is None else np.asarray(arr, np.uint8)
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    Image.fromarray(a, "RGB").save(path, quality=95)
    return path


def write_bmp(path, arr: np.ndarray | None = None, **kw) -> Path:
    """An 8-bit grey BMP."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cell_array(**kw) if arr is None else np.asarray(arr, np.uint8)).save(path, format="BMP")
    return path


def write_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def images():
    """The image writers, for tests that build small datasets in tmp_path."""

    class _Writers:
        png = staticmethod(write_png)
        tiff16 = staticmethod(write_tiff16)
        jpeg = staticmethod(write_jpeg_rgb)
        bmp = staticmethod(write_bmp)
        text = staticmethod(write_text)
        array = staticmethod(cell_array)

    return _Writers()
