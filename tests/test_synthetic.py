"""Tests of the synthetic HEp-2 generator (hep2.data.synthetic)."""

from __future__ import annotations

import csv
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    from hep2.data import synthetic
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from hep2.data import synthetic

from hep2.data.synthetic import PATTERNS, generate_cell, make_synthetic, specimen_style
from hep2.errors import Hep2Error


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict]:
    with open(root / "specimens.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = make_synthetic(tmp_path / "a", per_class=4, specimens=5, seed=7)
    b = make_synthetic(tmp_path / "b", per_class=4, specimens=5, seed=7)
    c = make_synthetic(tmp_path / "c", per_class=4, specimens=5, seed=8)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 5 * 4 + 1
    assert fa == fb
    assert fa.keys() == fc.keys()  # same names ...
    pngs = [k for k in fa if k.endswith(".png")]
    assert sum(fa[k] != fc[k] for k in pngs) == len(pngs)  # ... but every image differs


def test_generate_cell_is_deterministic_for_a_generator_state():
    st = specimen_style(np.random.default_rng(3))
    x = generate_cell("centromere", np.random.default_rng(11), st)
    y = generate_cell("centromere", np.random.default_rng(11), st)
    z = generate_cell("centromere", np.random.default_rng(12), st)
    assert np.array_equal(x, y)
    assert x.shape != z.shape or not np.array_equal(x, z)


# ------------------------------------------------------------------------------------------
# layout
# ------------------------------------------------------------------------------------------


def test_layout_counts_csv_specimens_and_images(tmp_path):
    out = make_synthetic(tmp_path / "deep" / "set", per_class=7, specimens=10, seed=1)
    assert out == tmp_path / "deep" / "set"
    assert sorted(p.name for p in out.iterdir()) == sorted([*PATTERNS, "specimens.csv"])
    # nothing left beside it (no temporary folder)
    assert [p.name for p in out.parent.iterdir()] == ["set"]

    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    for cls in PATTERNS:
        assert len(list((out / cls).glob("*.png"))) == 7

    with open(out / "specimens.csv", newline="", encoding="utf-8") as fh:
        assert fh.readline().strip() == "path,specimen,intensity"
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == on_disk
    assert len(rows) == len(on_disk) == 35

    spec_classes, spec_intensity, per_spec = defaultdict(set), defaultdict(set), Counter()
    for r in rows:
        cls, name = r["path"].split("/")
        assert name.startswith(r["specimen"] + "_") and name.endswith(".png")
        assert len(name) == len(r["specimen"]) + len("_0001.png")
        assert r["intensity"] in ("positive", "intermediate")
        spec_classes[r["specimen"]].add(cls)
        spec_intensity[r["specimen"]].add(r["intensity"])
        per_spec[r["specimen"]] += 1
    assert len(spec_classes) == 10
    assert all(len(v) == 1 for v in spec_classes.values())  # one pattern per specimen
    assert all(len(v) == 1 for v in spec_intensity.values())  # intensity is a slide property
    # round-robin: the i-th specimen (s01 = 0th) has class i % 5
    for spec, (cls,) in spec_classes.items():
        assert cls == PATTERNS[(int(spec[1:]) - 1) % len(PATTERNS)]
    # 7 cells of a class over its 2 specimens: 4 + 3
    for cls in PATTERNS:
        counts = sorted(n for s, n in per_spec.items() if cls in spec_classes[s])
        assert counts == [3, 4]

    for rel in on_disk:
        with Image.open(out / rel) as im:
            assert im.format == "PNG" and im.mode == "L"
            arr = np.asarray(im)
        assert arr.dtype == np.uint8 and arr.ndim == 2
        assert 32 <= arr.shape[0] <= 125 and 32 <= arr.shape[1] <= 125


def test_subset_of_classes_and_existing_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    out = make_synthetic(tmp_path / "empty", per_class=3, specimens=2, seed=0, classes=("nucleolar", "homogeneous"))
    assert sorted(p.name for p in out.iterdir()) == ["homogeneous", "nucleolar", "specimens.csv"]
    rows = _rows(out)
    assert {r["specimen"] for r in rows if r["path"].startswith("nucleolar/")} == {"s01"}
    assert {r["specimen"] for r in rows if r["path"].startswith("homogeneous/")} == {"s02"}


def test_generate_cell_and_specimen_style():
    rng = np.random.default_rng(0)
    for pattern in PATTERNS:
        for _ in range(5):
            img = generate_cell(pattern, rng)  # draws its own specimen style
            assert img.dtype == np.uint8 and img.ndim == 2
            assert 32 <= min(img.shape) and max(img.shape) <= 125
            # roughly centred cell on a dark background
            h, w = img.shape
            centre = img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].astype(float).mean()
            border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(float).mean()
            assert centre > border
    st = specimen_style(np.random.default_rng(1))
    assert st["intensity"] in ("positive", "intermediate")
    for key in ("peak", "background", "blur", "noise", "speckle", "dots", "dot_brightness"):
        assert isinstance(st[key], float)
    with pytest.raises(Hep2Error, match="golgi"):
        generate_cell("golgi", rng)


# ------------------------------------------------------------------------------------------
# errors and atomic writing
# ------------------------------------------------------------------------------------------


def test_fewer_specimens_than_classes_is_an_error(tmp_path):
    with pytest.raises(Hep2Error, match=r"specimens=3.*5 classes"):
        make_synthetic(tmp_path / "x", per_class=2, specimens=3)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"per_class": 0}, "per_class=0"),
        ({"classes": ("homogeneous", "speckles")}, "speckles"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_other_bad_arguments(tmp_path, kwargs, word):
    with pytest.raises(Hep2Error, match=word):
        make_synthetic(tmp_path / "x", **{"specimens": 5, "per_class": 2, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_existing_non_empty_folder_is_an_error_and_left_alone(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(Hep2Error) as info:
        make_synthetic(target, per_class=2, specimens=5)
    msg = str(info.value)
    assert str(target) in msg and ("new" in msg or "delete" in msg)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_interrupted_run_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    real, calls = synthetic.generate_cell, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_cell", failing)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path / "set", per_class=3, specimens=5)
    assert list(tmp_path.iterdir()) == []


def test_two_processes_making_the_cached_set_at_once_both_read_it(tmp_path, monkeypatch):
    """Under torchrun every process opens `synthetic:N`; with a cold cache the slower one finds the
    faster one's copy in place when it renames its own (seen: 'Directory not empty')."""
    import os
    import shutil

    from hep2.data import open_dataset

    monkeypatch.setenv("HEP2_CACHE", str(tmp_path / "cache"))
    real_rename = os.rename

    def the_other_process_was_first(src, dst):
        shutil.copytree(src, dst)  # its identical copy lands just before ours
        return real_rename(src, dst)  # ours cannot replace a non-empty folder: OSError

    monkeypatch.setattr(synthetic.os, "rename", the_other_process_was_first)
    cells = open_dataset("synthetic:3")
    assert len(cells) == 15 and cells.specimens is not None
    made = tmp_path / "cache" / "synthetic"
    assert [p.name for p in made.iterdir()] == ["pc3-sp20-seed0-v1"]  # our partial copy was removed
    # a failure that leaves no set in place is still an error, named
    monkeypatch.setattr(synthetic.os, "rename", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(Hep2Error, match="cannot write the synthetic set"):
        open_dataset("synthetic:4")


# ------------------------------------------------------------------------------------------
# realism and separability
# ------------------------------------------------------------------------------------------

SEEDS = (0, 1, 2)


def _features(img: np.ndarray) -> np.ndarray:
    """Uniform rotation-invariant LBP histograms (R=1, 2) + intensity stats, on [0,1]-scaled image."""
    from skimage.feature import local_binary_pattern

    x = img.astype(float)
    lo, hi = np.percentile(x, [1, 99])
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    u8 = np.round(x * 255).astype(np.uint8)
    parts = []
    for p, r in ((8, 1), (16, 2)):
        codes = local_binary_pattern(u8, p, r, method="uniform")
        hist, _ = np.histogram(codes, bins=p + 2, range=(0, p + 2))
        parts.append(hist / hist.sum())
    parts.append([x.mean(), x.std(), *np.percentile(x, [10, 25, 50, 75, 90])])
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Per seed: images, features, labels and specimens of a 5 x 40-cell set over 20 specimens."""
    out = {}
    for seed in SEEDS:
        root = make_synthetic(tmp_path_factory.mktemp(f"sep{seed}") / "set", per_class=40, specimens=20, seed=seed)
        rows = _rows(root)
        imgs = [np.asarray(Image.open(root / r["path"])) for r in rows]
        out[seed] = {
            "imgs": imgs,
            "X": np.array([_features(i) for i in imgs]),
            "y": np.array([PATTERNS.index(r["path"].split("/")[0]) for r in rows]),
            "groups": np.array([r["specimen"] for r in rows]),
            "intensity": np.array([r["intensity"] for r in rows]),
        }
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_image_statistics_look_like_snphep2(sets, seed):
    d = sets[seed]
    maxima = np.array([i.max() for i in d["imgs"]], dtype=float)
    sides = np.array([np.sqrt(i.shape[0] * i.shape[1]) for i in d["imgs"]])
    assert 55 <= np.median(maxima) <= 110  # SNPHEp-2: median image max ~78
    assert 40 <= np.median(sides) <= 58  # SNPHEp-2: median ~48x48
    assert maxima.min() < 50 and maxima.max() > 150  # dim and bright specimens
    # positive specimens are brighter than intermediate ones
    pos, inter = d["intensity"] == "positive", d["intensity"] == "intermediate"
    assert pos.any() and inter.any()
    assert np.median(maxima[pos]) > 1.5 * np.median(maxima[inter])
    # dark background: the image border is much dimmer than the image max
    borders = np.array([np.median(np.concatenate([i[0], i[-1]])) for i in d["imgs"]], dtype=float)
    assert np.median(borders / maxima) < 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_patterns_separable_but_specimen_split_harder(sets, seed):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    d = sets[seed]
    X, y, groups = d["X"], d["y"], d["groups"]
    clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10, gamma="scale"))

    random_cv = StratifiedKFold(5, shuffle=True, random_state=0)
    acc_random = cross_val_score(clf, X, y, cv=random_cv).mean()

    # Specimen-disjoint 5-fold CV. Not plain GroupKFold: with specimens given classes
    # round-robin it puts all 4 specimens of a class into one fold (accuracy 0).
    group_cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    for train, test in group_cv.split(X, y, groups):
        assert not set(groups[train]) & set(groups[test])
        assert len(set(y[train])) == len(PATTERNS)
    acc_group = cross_val_score(clf, X, y, cv=group_cv, groups=groups).mean()

    msg = f"seed {seed}: random CV {acc_random:.3f}, specimen-disjoint CV {acc_group:.3f}"
    assert acc_random >= 0.85, msg
    assert acc_group <= acc_random - 0.03, msg
    assert acc_group >= 0.6, msg
