"""The Table II hand-crafted baselines: LBPFeatures, TextureFeatures and SVMClassifier."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from hep2.data import Preprocess, load_images, open_dataset
from hep2.data.synthetic import generate_cell
from hep2.errors import Hep2Error
from hep2.features import PREFERRED_SIZE, BoWFeatures, LBPFeatures, ShapeIndexFeatures, SVMClassifier, TextureFeatures


def padded_cells(n: int = 6, size: int = 40, seed: int = 0) -> np.ndarray:
    """Synthetic cells (uint8) resized into a square, zero-padded like load_images' output."""
    from hep2.data.images import normalise, resize_square

    rng = np.random.default_rng(seed)
    patterns = ["homogeneous", "coarse_speckled", "fine_speckled", "nucleolar", "centromere"]
    out = []
    for i in range(n):
        raw = generate_cell(patterns[i % 5], rng).astype(np.float32)
        out.append(np.round(resize_square(normalise(raw), size) * 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def cells40():
    return padded_cells(6, 40)


# ----------------------------------------------------------------------------- LBP


def test_lbp_shape_dtype_and_normalised_blocks(cells40):
    lbp = LBPFeatures()
    F = lbp.fit(cells40).transform(cells40)
    assert F.shape == (6, 10 + 18 + 18)  # P = 8, 16, 16 -> P + 2 uniform codes each
    assert F.dtype == np.float64
    np.testing.assert_allclose(F[:, :10].sum(1), 1.0)
    np.testing.assert_allclose(F[:, 10:28].sum(1), 1.0)
    np.testing.assert_allclose(F[:, 28:].sum(1), 1.0)
    assert len(lbp.get_feature_names_out()) == F.shape[1]
    # float 0..1 input and (N, 1, S, S) give the same features as uint8
    np.testing.assert_allclose(lbp.transform(cells40[:, None] / 255.0), F)
    # explicit points, and intensity statistics appended
    F2 = LBPFeatures(radii=(1, 2), points=(8, 8), intensity=True).transform(cells40)
    assert F2.shape == (6, 10 + 10 + 9)


def test_lbp_ignores_zero_padding(cells40):
    """The same cell in a larger zero frame gives the same histogram: padding is not counted."""
    framed = np.pad(cells40, ((0, 0), (7, 13), (20, 0)))
    np.testing.assert_allclose(LBPFeatures().transform(framed), LBPFeatures().transform(cells40))


def test_lbp_rotation_invariance(cells40):
    lbp = LBPFeatures()
    F = lbp.transform(cells40)
    Fr = lbp.transform(np.rot90(cells40, 1, axes=(1, 2)))
    assert np.abs(F - Fr).sum(1).max() < 0.05  # L1 distance of the three histograms together
    # ... while different cells are far apart (so the check above is not trivially met)
    assert np.abs(F[0] - F[4]).sum() > 0.2


def test_lbp_bad_input_and_settings():
    with pytest.raises(Hep2Error, match="shape"):
        LBPFeatures().transform(np.zeros((4, 4), np.uint8))
    with pytest.raises(Hep2Error, match="0..1"):
        LBPFeatures().transform(np.full((2, 8, 8), 3.0))
    with pytest.raises(Hep2Error, match="one point count per radius"):
        LBPFeatures(radii=(1, 2), points=(8,)).fit(np.zeros((2, 8, 8), np.uint8))


# ----------------------------------------------------------------------------- GLCM


def test_texture_shape_dtype_and_padding(cells40):
    tex = TextureFeatures()
    F = tex.fit_transform(cells40)
    assert F.shape == (6, 6 * 2 * 3 + 9)  # 6 properties x (mean, range) x 3 distances + 9 intensity stats
    assert F.dtype == np.float64 and np.isfinite(F).all()
    assert len(tex.get_feature_names_out()) == F.shape[1]
    framed = np.pad(cells40, ((0, 0), (5, 0), (0, 11)))
    np.testing.assert_allclose(tex.transform(framed), F)
    # a foreground threshold changes the counted pixels; fewer distances, no intensity part
    Ft = TextureFeatures(distances=(1,), levels=16, threshold=0.2, intensity=False).transform(cells40)
    assert Ft.shape == (6, 12) and np.isfinite(Ft).all()
    assert not np.allclose(Ft, TextureFeatures(distances=(1,), levels=16, intensity=False).transform(cells40))
    # the cells differ: the features are not constant across images
    assert (F.std(0) > 0).sum() > F.shape[1] // 2


def test_texture_constant_and_black_images_are_finite():
    imgs = np.zeros((3, 16, 16), np.uint8)
    imgs[1, 4:12, 4:12] = 200  # a constant square cell
    imgs[2] = 255
    F = TextureFeatures().transform(imgs)
    assert np.isfinite(F).all()


def test_texture_bad_settings():
    with pytest.raises(Hep2Error, match="unknown GLCM"):
        TextureFeatures(props=("entropy-ish",)).fit(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(Hep2Error, match="levels"):
        TextureFeatures(levels=1).transform(np.zeros((1, 8, 8), np.uint8))


# ----------------------------------------------------------------------------- bag of words


def test_bow_histograms_are_unit_blocks_blind_to_flips_rotations_and_padding(cells40):
    bow = BoWFeatures(words=16, seed=0).fit(cells40)
    F = bow.transform(cells40)
    assert F.shape == (6, 80) and (F >= 0).all()
    for block in range(5):  # whole cell and its four bands: square roots of histograms summing to 1
        np.testing.assert_allclose((F[:, block * 16 : (block + 1) * 16] ** 2).sum(1), 1.0, atol=1e-9)
    turned = np.stack([np.rot90(im)[:, ::-1] for im in cells40])
    np.testing.assert_allclose(bow.transform(turned), F, atol=1e-9)  # the 8 views are averaged
    wider = np.pad(cells40, ((0, 0), (5, 7), (3, 9)))  # more zero padding
    np.testing.assert_allclose(bow.transform(wider), F, atol=1e-9)
    assert not np.allclose(F[0], F[1])  # different patterns differ
    assert len(bow.get_feature_names_out()) == 80 and bow.codebook_.cluster_centers_.shape == (16, 104)
    # the bands split the whole cell's words: their counts, weighted by the bands' shares, add up to it
    one = BoWFeatures(words=16, seed=0, rings=(0.5,)).fit(cells40)
    F1 = one.transform(cells40[:1])[0] ** 2
    assert F1.shape == (48,) and one.get_feature_names_out()[16] == "bow_band0_0"
    assert np.isclose(F1[:16].sum(), 1) and not np.allclose(F1[16:32], F1[32:])
    saved = pickle.loads(pickle.dumps(one))
    del saved.rings
    saved.inner = 0.5  # what a bow saved before rings existed pickled
    old = pickle.loads(pickle.dumps(saved))
    assert old.rings == (0.5,) and not hasattr(old, "inner")
    np.testing.assert_allclose(old.transform(cells40[:1])[0] ** 2, F1, atol=1e-12)
    whole = BoWFeatures(words=16, seed=0, rings=()).fit(cells40)
    np.testing.assert_allclose(whole.transform(cells40), F[:, :16], atol=1e-9)  # same codebook, same counts


def test_bow_smooths_inside_the_cell_where_asked_and_an_older_model_loads_unsmoothed(cells40):
    """smooth: a Gaussian of that sigma on each cell before its words (dim cells are noisier and
    coarser-quantised once stretched); 0, the default, is the earlier bow, and a model saved before it existed
    keeps it."""
    plain = BoWFeatures(words=16, seed=0).fit(cells40)
    soft = BoWFeatures(words=16, seed=0, smooth=1.5).fit(cells40)
    assert plain.smooth == 0.0
    Fp, Fs = plain.transform(cells40), soft.transform(cells40)
    assert not np.allclose(Fp, Fs)
    # the same codebook read from smoothed cells counts other words; the descriptors are those of a blurred crop
    mixed = copy.deepcopy(plain).set_params(smooth=1.5)
    assert not np.allclose(mixed.transform(cells40), Fp)
    d0 = plain._descriptors(cells40[0], views=1)[0][0]
    d1 = mixed._descriptors(cells40[0], views=1)[0][0]
    assert d0.shape == d1.shape and not np.allclose(d0, d1)
    wider = np.pad(cells40, ((0, 0), (5, 7), (3, 9)))  # more zero padding
    np.testing.assert_allclose(soft.transform(wider), Fs, atol=1e-9)
    saved = copy.deepcopy(plain)
    del saved.smooth  # what a bow saved before smooth existed pickled
    old = pickle.loads(pickle.dumps(saved))
    assert old.smooth == 0.0
    np.testing.assert_allclose(old.transform(cells40), Fp, atol=1e-12)
    assert pickle.loads(pickle.dumps(soft)).smooth == 1.5  # a new model keeps its own
    for bad in (-1, 11, float("nan")):
        with pytest.raises(Hep2Error, match="smooth="):
            BoWFeatures(words=16, smooth=bad).fit(cells40)


def test_bow_bad_settings_and_too_few_descriptors_are_clear_errors(cells40):
    with pytest.raises(Hep2Error, match="words >= 2"):
        BoWFeatures(words=1).fit(cells40)
    for rings in ((2,), (0.6, 0.3), (0, 0.5)):
        with pytest.raises(Hep2Error, match=r"rings=\("):
            BoWFeatures(rings=rings).fit(cells40)
    with pytest.raises(Hep2Error, match="fewer than words=4096"):
        BoWFeatures(words=4096).fit(cells40)
    with pytest.raises(Exception, match="not fitted"):
        BoWFeatures().transform(cells40)


# ----------------------------------------------------------------------------- shape index


def test_shape_index_blocks_padding_and_names(cells40):
    si = ShapeIndexFeatures(scales=(1, 2), bins=4, curvedness=(1.0,), rings=(0.5,))
    F = si.fit(cells40).transform(cells40)
    assert F.shape == (6, si.n_features()) == (6, 2 * 4 * 2 * 3) and F.dtype == np.float64
    # each block (scale x region) is a square-rooted histogram of the cell's pixels: squares sum to 1
    np.testing.assert_allclose((F.reshape(6, 2 * 3, 8) ** 2).sum(-1), 1.0)
    assert len(si.get_feature_names_out()) == F.shape[1]
    assert ShapeIndexFeatures().n_features() == 800 == ShapeIndexFeatures().transform(cells40[:1]).shape[1]
    # the zero frame is cut away; float 0..1 input gives the same features as uint8
    framed = np.pad(cells40, ((0, 0), (7, 13), (20, 0)))
    np.testing.assert_allclose(ShapeIndexFeatures().transform(framed), ShapeIndexFeatures().transform(cells40))
    np.testing.assert_allclose(si.transform(cells40 / 255.0), F)


def test_shape_index_ignores_orientation_and_brightness(cells40):
    """The shape index and the curvedness relative to the cell's mean do not change with a rotation, a
    flip or a gain on the grey levels; different cells stay far apart."""
    si = ShapeIndexFeatures()
    F = si.transform(cells40)
    for moved in (np.rot90(cells40, 1, axes=(1, 2)), cells40[:, :, ::-1]):
        np.testing.assert_allclose(si.transform(np.ascontiguousarray(moved)), F, atol=1e-6)
    dimmer = np.round(cells40 * 0.6).astype(np.uint8)  # 8-bit rounding is all that differs
    assert np.abs(si.transform(dimmer) - F).sum(1).max() < 0.25 * np.abs(F[0] - F[4]).sum()


def test_shape_index_bad_settings():
    img = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(Hep2Error, match="scale > 0"):
        ShapeIndexFeatures(scales=()).fit(img)
    with pytest.raises(Hep2Error, match="bins >= 2"):
        ShapeIndexFeatures(bins=1).transform(img)
    with pytest.raises(Hep2Error, match="curvedness"):
        ShapeIndexFeatures(curvedness=(2.0, 1.0)).fit(img)
    with pytest.raises(Hep2Error, match="rings"):
        ShapeIndexFeatures(rings=(0.6, 0.3)).fit(img)
    with pytest.raises(Hep2Error, match="scale > 0"):
        ShapeIndexFeatures(scales=(2, float("nan"))).fit(img)
    with pytest.raises(Hep2Error, match="needs numbers"):
        ShapeIndexFeatures(bins="eight").fit(img)
    # an all-black cell gives empty histograms, not NaN; a cell one pixel thin still has features
    assert np.isfinite(ShapeIndexFeatures().transform(np.zeros((1, 16, 16), np.uint8))).all()
    thin = np.zeros((2, 16, 16), np.uint8)
    thin[0, 5, 5] = 200
    thin[1, 7, 2:14] = 90
    F = ShapeIndexFeatures().transform(thin)
    assert np.isfinite(F).all() and (F > 0).any(axis=1).all()
    # no rings: the whole cell only, as for BoWFeatures
    whole = ShapeIndexFeatures(rings=())
    assert whole.n_features() == 5 * 8 * 4 == whole.transform(thin).shape[1] == len(whole.get_feature_names_out())


# ----------------------------------------------------------------------------- sklearn contract


def test_clone_and_params():
    lbp = LBPFeatures(radii=(1, 3), points=(8, 12), threshold=0.1, intensity=True)
    assert clone(lbp).get_params() == {"radii": (1, 3), "points": (8, 12), "threshold": 0.1, "intensity": True}
    tex = TextureFeatures(distances=(2,), levels=16)
    assert clone(tex).get_params()["distances"] == (2,) and clone(tex).get_params()["levels"] == 16
    svm = SVMClassifier(C_grid=(1.0, 5.0), gamma_grid=(0.1,), inner_folds=2, seed=3)
    assert clone(svm).get_params() == {"C_grid": (1.0, 5.0), "gamma_grid": (0.1,), "inner_folds": 2, "seed": 3}
    pipe = make_pipeline(LBPFeatures(), SVMClassifier())
    pipe.set_params(lbpfeatures__radii=(1, 2), svmclassifier__inner_folds=4)
    assert clone(pipe).get_params()["lbpfeatures__radii"] == (1, 2)
    assert clone(pipe).get_params()["svmclassifier__inner_folds"] == 4
    # a pipeline fits and predicts end to end on images
    imgs = padded_cells(10, 32)
    y = np.arange(10) % 5
    fitted = make_pipeline(LBPFeatures(), SVMClassifier(C_grid=(1.0,), inner_folds=2)).fit(imgs, y)
    assert fitted.predict(imgs).shape == (10,) and fitted.predict_proba(imgs).shape == (10, 5)


def test_svm_picks_from_grid_and_probabilities():
    X, y = make_classification(120, 8, n_informative=5, n_classes=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    svm = SVMClassifier(C_grid=(0.5, 5.0), gamma_grid=(0.01, 0.2), inner_folds=3).fit(X, labels)
    assert svm.best_params_["C"] in (0.5, 5.0) and svm.best_params_["gamma"] in (0.01, 0.2)
    assert list(svm.classes_) == ["a", "b", "c"]
    P = svm.predict_proba(X)
    assert P.shape == (120, 3)
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert (svm.predict(X) == labels).mean() > 0.8
    assert (svm.classes_[P.argmax(1)] == svm.predict(X)).mean() > 0.9
    # the default gamma grid is relative to the number of features
    d = SVMClassifier(C_grid=(1.0,), inner_folds=2).fit(X, y)
    assert np.isclose(d.best_params_["gamma"] * X.shape[1], SVMClassifier.GAMMA_SCALES).any()
    with pytest.raises(Hep2Error, match="expected features"):
        d.predict(X[:, :3])


def test_svm_single_pair_skips_the_search_and_fits_that_pair():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = make_classification(90, 6, n_informative=4, n_classes=3, random_state=1)
    svm = SVMClassifier(C_grid=(3.0,), gamma_grid=(0.05,), inner_folds=3, seed=2).fit(X, y)
    assert svm.best_params_ == {"C": 3.0, "gamma": 0.05} and svm.best_score_ is None and svm.cv_results_ is None
    ref = CalibratedClassifierCV(
        Pipeline([("scale", StandardScaler()), ("svc", SVC(C=3.0, gamma=0.05))]),
        method="sigmoid",
        cv=StratifiedKFold(3, shuffle=True, random_state=2),
        ensemble=False,
    ).fit(X, y)
    np.testing.assert_allclose(svm.predict_proba(X), ref.predict_proba(X))


def test_svm_rejects_too_few_per_class():
    X = np.random.default_rng(0).normal(size=(7, 3))
    y = np.array([0, 0, 0, 0, 0, 1, 1])
    with pytest.raises(
        Hep2Error,
        match="class 1 has 2 training cells, fewer than the 3 folds of the inner "
        "cross-validation that chooses C and gamma: add cells of that class",
    ):
        SVMClassifier().fit(X, y)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"inner_folds": 1}, "inner_folds=1: the inner cross-validation needs a whole number >= 2"),
        ({"C_grid": (-1, 1)}, "C_grid=.*give a list of positive numbers"),
        ({"C_grid": 1.0}, "C_grid=1.0: give a list"),
        ({"gamma_grid": "scale"}, "gamma_grid='scale': give a list"),
        ({"C_grid": ()}, r"C_grid=\(\): give a list"),
    ],
)
def test_svm_parameters_are_checked(params, message):
    """Were scikit-learn's errors, "is not iterable", or inner fits failing with only warnings."""
    X = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(Hep2Error, match=message):
        SVMClassifier(**params).fit(X, np.repeat([0, 1], 6))


# ----------------------------------------------------------------------------- accuracy


@pytest.fixture(scope="module")
def synthetic40(synthetic_set):
    imgs, cells = synthetic_set("synthetic:40", 64)
    return imgs, cells.y


@pytest.mark.parametrize(
    "features",
    [LBPFeatures(), TextureFeatures(), BoWFeatures(words=64), ShapeIndexFeatures()],
    ids=["lbp", "texture", "bow", "shape-index"],
)
def test_separability_on_synthetic(synthetic40, features):
    """The built-in synthetic set (200 cells, 5 patterns) is separable by the descriptors (about
    0.9 under random 5-fold cv). They are computed once (the codebook learns from all 200 images,
    without labels, as under the cv protocol)."""
    imgs, y = synthetic40
    F = features.fit_transform(imgs)
    acc = cross_val_score(
        SVMClassifier(C_grid=(1.0, 10.0, 100.0)), F, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)
    ).mean()
    assert acc >= 0.8


def test_lbp_svm_reaches_the_paper_on_snphep2_cv(snphep2_root):
    """LBP + SVM under ``cv`` (StratifiedKFold(5, shuffle, 0) on train/): the paper's 0.8571 or more."""
    cells = open_dataset(f"snphep2:{snphep2_root}")
    train = cells.subset("train")
    imgs, train = load_images(train, Preprocess(size=PREFERRED_SIZE, low_pct=1, high_pct=99.5))
    F, y = LBPFeatures().transform(imgs), train.y
    accs = []
    for a, b in StratifiedKFold(5, shuffle=True, random_state=0).split(F, y):
        accs.append((SVMClassifier().fit(F[a], y[a]).predict(F[b]) == y[b]).mean())
    assert len(y) == 905
    assert np.mean(accs) >= 0.85, accs


@pytest.mark.parametrize("make", [lambda t: LBPFeatures(threshold=t), lambda t: TextureFeatures(threshold=t)])
def test_a_threshold_outside_the_grey_range_is_an_error(make):
    imgs = np.random.default_rng(0).integers(0, 255, (2, 24, 24)).astype(np.uint8)
    for t in (2, -1):
        with pytest.raises(Hep2Error, match=rf"threshold={t}: a fraction of the grey range in \[0, 1\)"):
            make(t).fit(imgs).transform(imgs)
