"""scikit-learn compatibility of DCAEFeatures and MLPHead: clone, params, Pipeline,
cross_val_score with GroupKFold over specimens, string labels, image paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from hep2.data import load_images
from hep2.data.images import Preprocess
from hep2.errors import Hep2Error
from hep2.estimators import DCAEFeatures, MLPHead
from hep2.presets import PRESETS


@pytest.fixture(scope="module")
def synth(synthetic_set):
    """synthetic:6 (30 cells, 20 specimens) at the tiny preset's 32x32: images, string labels, specimens."""
    imgs, cells = synthetic_set("synthetic:6", 32)
    labels = np.array([cells.classes[i] for i in cells.y])
    return cells, imgs, labels, cells.specimens


@pytest.fixture(scope="module")
def fitted_ae(synth):
    _, imgs, _, _ = synth
    return DCAEFeatures(preset="tiny", settings={"ae_epochs": 2}).fit(imgs)


def test_clone_and_params_roundtrip():
    ae = DCAEFeatures(preset="tiny", settings={"ae_epochs": 2}, verbose=False)
    params = ae.get_params()
    assert params == {
        "preset": "tiny",
        "settings": {"ae_epochs": 2},
        "checkpoint": None,
        "resume": False,
        "verbose": False,
    }
    c = clone(ae)
    assert c is not ae and c.get_params() == params
    assert not hasattr(c, "model_")
    ae.set_params(settings={"latent": 64})
    assert ae._config().latent == 64 and c._config().latent == PRESETS["tiny"].latent

    head = MLPHead(hidden=(16,), epochs=20)
    hp = head.get_params()
    assert hp["hidden"] == (16,) and hp["epochs"] == 20 and hp["dropout"] == 0.5
    assert clone(head).get_params() == hp
    assert head.set_params(lr=0.5) is head and head.lr == 0.5

    pipe = make_pipeline(DCAEFeatures(preset="tiny"), MLPHead())
    pipe.set_params(dcaefeatures__settings={"ae_epochs": 1}, mlphead__epochs=3)
    assert pipe.get_params()["dcaefeatures__settings"] == {"ae_epochs": 1}
    assert clone(pipe).get_params()["mlphead__epochs"] == 3


def test_a_preset_object_is_a_valid_parameter():
    cfg = PRESETS["tiny"].override({"ae_epochs": 1})
    ae = DCAEFeatures(preset=cfg)
    assert ae._config() is cfg and clone(ae)._config() == cfg


def test_pipeline_cross_validates_with_groupkfold_over_specimens(synth):
    _, imgs, labels, specimens = synth
    pipe = make_pipeline(DCAEFeatures(preset="tiny", settings={"ae_epochs": 2}), MLPHead(hidden=(16,), epochs=20))
    scores = cross_val_score(pipe, imgs, labels, cv=GroupKFold(3), groups=specimens)
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))


def test_transform_gives_float32_latent_features(fitted_ae, synth):
    _, imgs, _, _ = synth
    f = fitted_ae.transform(imgs)
    assert f.shape == (len(imgs), PRESETS["tiny"].latent) and f.dtype == np.float32
    assert np.all(np.isfinite(f)) and f.min() >= 0
    # float input in [0, 1] and (N, 1, S, S) give the same features as uint8 (N, S, S)
    np.testing.assert_allclose(fitted_ae.transform(imgs[:, None] / 255.0), f, rtol=1e-5, atol=1e-6)
    assert fitted_ae.get_feature_names_out()[0] == "conv5_0"
    assert len(fitted_ae.get_feature_names_out()) == f.shape[1]
    rec = fitted_ae.reconstruct(imgs[:4])
    assert rec.shape == (4, 32, 32) and rec.min() >= 0 and rec.max() <= 1
    assert fitted_ae.history_ and len(fitted_ae.history_) <= 2


def test_transform_accepts_image_paths_after_fit(fitted_ae, synth):
    cells, imgs, _, _ = synth
    paths = [str(p) for p in cells.paths[:5]]
    np.testing.assert_allclose(fitted_ae.transform(paths), fitted_ae.transform(imgs[:5]), rtol=1e-5, atol=1e-6)
    assert fitted_ae.transform(cells.paths[:2]).shape == (2, PRESETS["tiny"].latent)  # Path objects too


def test_image_paths_use_the_presets_preprocessing(synth):
    """Paths are preprocessed with the fitted preset's settings, as the images it was fitted on."""
    cells, _, _, _ = synth
    prep = Preprocess(32, low_pct=20.0, high_pct=90.0)
    imgs, _ = load_images(cells, prep)
    ae = DCAEFeatures(preset="tiny", settings={"ae_epochs": 1, "low_pct": 20, "high_pct": 90}).fit(imgs)
    np.testing.assert_allclose(
        ae.transform([str(p) for p in cells.paths[:4]]), ae.transform(imgs[:4]), rtol=1e-5, atol=1e-6
    )


def test_wrong_image_size_is_a_clear_error(fitted_ae):
    with pytest.raises(Hep2Error, match=r"48x48.*32x32"):
        fitted_ae.transform(np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(Hep2Error, match="shape"):
        fitted_ae.transform(np.zeros((2, 32, 30), np.uint8))
    with pytest.raises(Hep2Error, match=r"48x48.*32x32"):
        DCAEFeatures(preset="tiny").fit(np.zeros((4, 48, 48), np.uint8))


def test_mlphead_probabilities_and_string_labels(fitted_ae, synth):
    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    head = MLPHead(hidden=(16,), epochs=20).fit(X, labels)
    assert list(head.classes_) == sorted(set(labels))
    proba = head.predict_proba(X)
    assert proba.shape == (len(X), 5) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    pred = head.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(labels)
    assert np.array_equal(pred, head.classes_[proba.argmax(1)])
    assert 0 <= head.score(X, labels) <= 1
    assert head.n_features_in_ == X.shape[1]
    assert 1 <= len(head.history_) <= 20


def test_mlphead_without_hidden_layers_is_a_linear_softmax_classifier(fitted_ae, synth):
    from hep2.presets import get_preset

    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    assert get_preset("tiny", overrides={"hidden": ""}).hidden == ()  # --set hidden= on the command line
    head = MLPHead(hidden=(), dropout=0.0, weight_decay=0.1, epochs=60, ensemble=2).fit(X, labels)
    assert (
        all(
            isinstance(n, torch.nn.Sequential) and len(n) == 1 and isinstance(n[0], torch.nn.Linear) for n in head.nets_
        )
        and len(head.nets_) == 2
    )
    assert head.nets_[0][0].in_features == X.shape[1]
    assert head.score(X, labels) >= 0.5  # chance is 0.2


def test_mlphead_is_reproducible_for_a_seed(fitted_ae, synth):
    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    a = MLPHead(hidden=(8,), epochs=5, seed=3).fit(X, labels).predict_proba(X)
    b = MLPHead(hidden=(8,), epochs=5, seed=3).fit(X, labels).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_mlphead_needs_two_classes():
    with pytest.raises(Hep2Error, match="two classes"):
        MLPHead(epochs=1).fit(np.zeros((6, 3)), ["a"] * 6)


def test_tta_features_do_not_depend_on_the_orientation(fitted_ae, synth):
    _, imgs, _, _ = synth
    ae = clone(fitted_ae)
    ae.model_, ae.n_features_out_ = fitted_ae.model_, fitted_ae.n_features_out_
    ae.config_ = fitted_ae.config_.override({"tta": True})
    turned = np.ascontiguousarray(np.rot90(imgs[:6], 1, axes=(1, 2))[:, :, ::-1])
    plain = fitted_ae.transform(imgs[:6])
    np.testing.assert_allclose(ae.transform(turned), ae.transform(imgs[:6]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(fitted_ae.transform(turned), plain, atol=1e-4)  # without tta it does
    # the tta features are the mean of the 8 views' plain features
    views = [np.ascontiguousarray(np.rot90(imgs[:6], k, axes=(1, 2))[:, :, ::f]) for k in range(4) for f in (1, -1)]
    np.testing.assert_allclose(
        ae.transform(imgs[:6]), np.mean([fitted_ae.transform(v) for v in views], 0), rtol=1e-4, atol=1e-5
    )


def test_mlphead_ensemble_averages_the_probabilities_of_its_seeds(fitted_ae, synth):
    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    ens = MLPHead(hidden=(8,), epochs=5, seed=3, ensemble=3).fit(X, labels)
    assert len(ens.nets_) == 3
    singles = [MLPHead(hidden=(8,), epochs=5, seed=s).fit(X, labels).predict_proba(X) for s in (3, 4, 5)]
    np.testing.assert_allclose(ens.predict_proba(X), np.mean(singles, 0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(singles[0], singles[1])
    with pytest.raises(Hep2Error, match=r"ensemble=0: must lie in \[1, 100\]"):
        MLPHead(ensemble=0).fit(X, labels)
    assert MLPHead.from_preset(PRESETS["cpu"]).ensemble == 2 and PRESETS["cpu"].ae_ensemble == 3


def test_mlphead_groups_train_separate_networks_on_each_feature_block(fitted_ae, synth):
    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    both = np.concatenate([X, X[:, ::-1]], axis=1)
    head = MLPHead(hidden=(8,), epochs=5, seed=1, groups=2).fit(both, labels)
    assert len(head.blocks_) == 2 and len(head.nets_) == 2
    a = MLPHead(hidden=(8,), epochs=5, seed=1).fit(X, labels).predict_proba(X)
    b = MLPHead(hidden=(8,), epochs=5, seed=1).fit(X[:, ::-1], labels).predict_proba(X[:, ::-1])
    np.testing.assert_allclose(head.predict_proba(both), (a + b) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(Hep2Error, match="groups=3"):
        MLPHead(groups=3).fit(both[:, :-1], labels)


def test_tta_samples_give_each_views_features_and_the_head_trains_on_every_view(fitted_ae, synth):
    _, imgs, labels, _ = synth
    ae = clone(fitted_ae)
    ae.model_, d = fitted_ae.model_, fitted_ae.n_features_out_
    ae.config_ = fitted_ae.config_.override({"tta": True, "tta_samples": True})
    ae.n_features_out_ = 8 * d
    F = ae.transform(imgs[:6])
    assert F.shape == (6, 8 * d)
    views = [np.ascontiguousarray(np.rot90(imgs[:6], k, axes=(1, 2))[:, :, ::f]) for k in range(4) for f in (1, -1)]
    plain = np.stack([fitted_ae.transform(v) for v in views], 1)  # (6, 8, d): one block per view
    np.testing.assert_allclose(np.sort(F.reshape(6, 8, d), 1), np.sort(plain, 1), rtol=1e-4, atol=1e-5)
    # the head: every view a sample (same as a head fitted on the stacked views), a cell's probabilities their mean
    X = ae.transform(imgs)
    head = MLPHead(hidden=(8,), epochs=5, seed=2, views=8).fit(X, labels)
    assert head.nets_[0][0].in_features == d
    stacked = MLPHead(hidden=(8,), epochs=5, seed=2).fit(X.reshape(-1, d), np.repeat(labels, 8))
    np.testing.assert_allclose(
        head.predict_proba(X),
        stacked.predict_proba(X.reshape(-1, d)).reshape(len(X), 8, -1).mean(1),
        rtol=1e-5,
        atol=1e-6,
    )
    assert MLPHead.from_preset(PRESETS["improved"].override({"tta_samples": True})).views == 8
    with pytest.raises(Hep2Error, match="groups=2 x views=8"):
        MLPHead(groups=2, views=8).fit(X[:, :-1], labels)
    with pytest.raises(Hep2Error, match="tta_samples=true .* set tta=true"):
        PRESETS["tiny"].override({"tta": False, "tta_samples": True})


def test_pooled_features_are_the_conv_maps_mean_and_max(fitted_ae, synth):
    _, imgs, _, _ = synth
    ae = clone(fitted_ae)
    ae.model_ = fitted_ae.model_
    for kind, width in (
        ("pooled", 2 * sum(PRESETS["tiny"].widths)),
        ("both", PRESETS["tiny"].latent + 2 * sum(PRESETS["tiny"].widths)),
    ):
        ae.config_ = fitted_ae.config_.override({"features": kind})
        ae.n_features_out_ = ae.model_.n_features(kind)
        F = ae.transform(imgs[:4])
        assert F.shape == (4, width) and ae.get_feature_names_out()[0] == f"{kind}_0"
    # by hand: Conv 1's maps of the first image, averaged and maxed
    import torch

    conv1 = fitted_ae.model_.encoder[0]
    x = torch.from_numpy(imgs[:1, None]).float().to(conv1.weight.device) / 255
    with torch.no_grad():
        h = torch.relu(conv1(x)).cpu()
    w1 = PRESETS["tiny"].widths[0]
    ae.config_ = fitted_ae.config_.override({"features": "pooled"})
    F = ae.transform(imgs[:1])
    np.testing.assert_allclose(F[0, :w1], h.mean((2, 3))[0].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(F[0, w1 : 2 * w1], h.amax((2, 3))[0].numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(Hep2Error, match="features=nope: choose conv5, pooled, both or words"):
        DCAEFeatures(preset="tiny", settings={"features": "nope"}).fit(imgs)


def test_an_mlphead_pickled_before_a_parameter_existed_loads_with_its_default(fitted_ae, synth):
    import pickle

    _, imgs, labels, _ = synth
    X = fitted_ae.transform(imgs)
    head = MLPHead(hidden=(8,), epochs=3, ensemble=2).fit(X, labels)
    old = pickle.loads(pickle.dumps(head))
    del old.__dict__["weight_decay"], old.__dict__["ensemble"]
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.weight_decay == MLPHead().weight_decay and loaded.ensemble == 1
    np.testing.assert_allclose(loaded.predict_proba(X), head.predict_proba(X), atol=1e-6)


def test_word_features_count_conv_words_over_the_cell_and_its_bands(synth):
    """features=words against a reference written with numpy / scikit-learn: Conv 2's maps of each of the 8
    flips / rotations, the positions inside the cell, each one's nearest word (KMeans.predict on the same
    normalised descriptors), counts over the cell and 4 bands, averaged over the views, square-rooted."""
    from sklearn.cluster import KMeans

    from hep2.estimators import dihedral
    from hep2.features.handcrafted import centre_distance

    _, imgs, _, _ = synth
    ae = DCAEFeatures(
        preset="tiny", settings={"ae_epochs": 2, "features": "words", "ae_words": 12, "ae_words_layer": 2, "tta": True}
    ).fit(imgs)
    K, n = 12, 5
    F = ae.transform(imgs[:6])
    assert F.shape == (6, n * K) and ae.n_features_out_ == n * K and ae.codebook_.shape == (K, 32)
    km = KMeans(K, n_init=1).fit(np.random.default_rng(0).random((K, 32)))  # a shell for predict
    km.cluster_centers_ = ae.codebook_.numpy().astype(np.float64)
    conv1, conv2 = ae.model_.encoder[0], ae.model_.encoder[1]
    bands = np.digitize(centre_distance(16, 16).ravel(), (0.3, 0.55, 0.8))
    for i in range(6):
        hists = []
        for k in range(8):
            x = dihedral(torch.from_numpy(imgs[i : i + 1, None]).float() / 255, k)
            with torch.no_grad():
                h = torch.relu(conv2(torch.nn.functional.max_pool2d(torch.relu(conv1(x)), 2)))[0].numpy()
            inside = (x[0, 0].numpy() > 0).reshape(16, 2, 16, 2).any((1, 3)).ravel()
            d = h.reshape(32, -1).T
            d = np.sqrt(d / (d.sum(1, keepdims=True) + 1e-6))[inside]
            w, b = km.predict(d.astype(np.float64)), bands[inside]
            parts = [w] + [w[b == j] for j in range(4)]
            hists.append(np.concatenate([np.bincount(p, minlength=K) / max(len(p), 1) for p in parts]))
        np.testing.assert_allclose(F[i], np.sqrt(np.mean(hists, 0)), atol=1e-5)
        if i == 0:
            first = np.sqrt(hists[0])  # the cell as it is
    # each region's histogram (where the cell reaches it) sums to 1; a cell and its flip give the same features
    assert np.allclose((F.reshape(6, n, K) ** 2).sum(2)[:, 0], 1, atol=1e-5)
    np.testing.assert_allclose(ae.transform(np.ascontiguousarray(imgs[:6, ::-1])), F, atol=1e-5)
    # without tta: the words of the cell as it is (the first view of the reference)
    ae.config_ = ae.config_.override({"tta": False})
    np.testing.assert_allclose(ae.transform(imgs[:1])[0], first, atol=1e-5)
    ae.config_ = ae.config_.override({"tta": True})
    # the codebook is learnt without labels, the same for the same seed
    again = DCAEFeatures(
        preset="tiny", settings={"ae_epochs": 2, "features": "words", "ae_words": 12, "ae_words_layer": 2, "tta": True}
    ).fit(imgs)
    torch.testing.assert_close(again.codebook_, ae.codebook_)
    with pytest.raises(Hep2Error, match="fewer than ae_words=60000: give more images or fewer words"):
        DCAEFeatures(preset="tiny", settings={"ae_epochs": 1, "features": "words", "ae_words": 60000}).fit(imgs[:4])


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"features": "words", "ae_words_layer": 5}, r"ae_words_layer=5: must lie in \[1, 4\]"),
        ({"features": "words", "ae_words": 1}, r"ae_words=1: must lie in \[2, "),
        ({"features": "words", "tta": True, "tta_samples": True}, "features=words counts .* set tta_samples=false"),
        ({"head": "svm"}, "head=svm: choose mlp or logistic"),
        ({"head": "logistic", "tta": True, "tta_samples": True}, "head=logistic reads one feature vector per cell"),
    ],
)
def test_word_and_head_settings_are_checked(settings, message):
    with pytest.raises(Hep2Error, match=message):
        PRESETS["tiny"].override(settings)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"dropout": 1.5}, r"dropout=1.5: must lie in \[0, 0.95\]"),
        ({"size": 0}, r"size=0: must lie in \[16, "),
        ({"widths": "16,32"}, "widths=16,32: give the 4 map counts"),
        ({"widths": "16,0,64,128"}, r"widths=16,0,64,128: each value must lie in \[1, "),
        ({"widths": [8.5, 16, 32, 64]}, "setting widths=.*expected a value like 16,32,64,128"),
        ({"hidden": "250,0"}, r"hidden=250,0: each value must lie in \[1, "),
        ({"cv_folds": 1}, r"cv_folds=1: must lie in \[2, 100\]"),
        ({"ae_batch": 0}, r"ae_batch=0: must lie in \[1, "),
        ({"latent": 0}, r"latent=0: must lie in \[1, "),
        ({"ae_epochs": -3}, r"ae_epochs=-3: must lie in \[1, "),
        ({"mlp_epochs": 0}, r"mlp_epochs=0: must lie in \[1, "),
        ({"ae_lr": 0}, r"ae_lr=0.0: must lie in \[1e-07, 10\]"),
        ({"mlp_val_fraction": -0.2}, r"mlp_val_fraction=-0.2: must lie in \[0, 0.9\]"),
        ({"ae_val_fraction": 1.5}, r"ae_val_fraction=1.5: must lie in \[0, 0.9\] \(the part of the training images"),
        ({"low_pct": 99.9}, "low_pct=99.9, high_pct=99.5: the percentile mapped to black must be below"),
        ({"high_pct": 101}, r"high_pct=101.0: must lie in \[0, 100\]"),
        ({"seed": -1}, r"seed=-1: must lie in \[0, "),
        ({"threads": -2}, r"threads=-2: must lie in \[0, "),
        ({"cnn_patience": -2}, r"cnn_patience=-2: must lie in \[-1, .*-1: the method's own"),
        ({"latent_activation": "tanh"}, "latent_activation=tanh: choose relu or linear"),
        ({"output": "relu"}, "output=relu: choose sigmoid or linear"),
        ({"features": "conv4"}, "features=conv4: choose conv5, pooled, both or words"),
        ({"ae_schedule": "step"}, "ae_schedule=step: choose constant or cosine"),
    ],
)
def test_every_numeric_setting_is_range_checked(settings, message):
    """A value that would give a traceback deep in PyTorch or scikit-learn, or a silently wrong run, is refused
    where the settings are read, with the range and what the setting means."""
    with pytest.raises(Hep2Error, match=message):
        PRESETS["tiny"].override(settings)


def test_dcae_side_must_be_a_multiple_of_16():
    from hep2.pipeline.methods import get_method

    with pytest.raises(Hep2Error, match=r"size=40: .* a multiple of 16 \(e.g. 48\)"):
        get_method("dcae-mlp", PRESETS["tiny"].override({"size": 40}))
    assert get_method("resnet", PRESETS["tiny"].override({"size": 40})).cfg.size == 40


def test_settings_at_their_limits_are_taken():
    cfg = PRESETS["tiny"].override(
        {
            "ae_val_fraction": 0,
            "mlp_val_fraction": 0,
            "ae_patience": 0,
            "dropout": 0,
            "hidden": "",
            "cv_folds": 2,
            "seed": 0,
            "cnn_patience": -1,
            "size": 16,
            "latent_activation": "linear",
            "output": "linear",
            "equalize": True,
            "low_pct": 99.9,
        }
    )
    assert cfg.hidden == () and cfg.size == 16 and cfg.low_pct == 99.9


def test_a_bad_setting_on_the_command_line_is_one_line(capsys):
    from hep2.cli import main

    assert main(["run", "synthetic:4", "--preset", "tiny", "--set", "dropout=1.5", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hep2: error: dropout=1.5: must lie in [0, 0.95]") and "Traceback" not in err


def test_mlphead_and_dcaefeatures_name_api_mistakes(synth, fitted_ae):
    from sklearn.exceptions import NotFittedError

    _, imgs, labels, _ = synth
    F = fitted_ae.transform(imgs)
    with pytest.raises(Hep2Error, match=r"one label a row: features \(30, \d+\), labels \(20,\)"):
        MLPHead(hidden=(4,), epochs=1).fit(F, labels[:20])  # trained on the wrong rows before
    with pytest.raises(Hep2Error, match="NaN or infinite"):
        MLPHead(hidden=(4,), epochs=1).fit(np.full_like(F, np.nan), labels)
    for params, message in (
        ({"epochs": 0}, r"epochs=0: must lie in \[1, "),
        ({"hidden": 5}, "hidden=5: give the hidden"),
        ({"dropout": 1.5}, r"dropout=1.5: must lie in \[0, 0.95\]"),
        ({"batch_size": 0}, r"batch_size=0: must lie in \[1, "),
        ({"val_fraction": 1.0}, r"val_fraction=1.0: must lie in \[0, 0.9\]"),
        ({"lr": -1}, r"lr=-1: must lie in \[1e-07, 10\]"),
        ({"seed": None}, "seed=None: must lie"),
    ):
        with pytest.raises(Hep2Error, match=message):
            MLPHead(**params).fit(F, labels)
    with pytest.raises(NotFittedError):
        MLPHead().predict(F)
    with pytest.raises(NotFittedError):
        DCAEFeatures().transform(imgs)
    head = MLPHead(hidden=(4,), epochs=2).fit(F, labels)
    with pytest.raises(Hep2Error, match=f"fitted on {F.shape[1]} features, got 5"):
        head.predict_proba(F[:, :5])
    with pytest.raises(Hep2Error, match="float images must lie in 0..1"):
        fitted_ae.transform(imgs.astype(np.float32))  # 0..255 floats were clipped to 0 / 255
    with pytest.raises(Hep2Error, match="no images given"):
        fitted_ae.transform(imgs[:0])
    with pytest.raises(Hep2Error, match="the images have several sizes"):
        fitted_ae.transform([imgs[0], imgs[1][:20, :20]])
    # settings on top of a Preset object, as on top of a preset's name (they were dropped)
    assert DCAEFeatures(preset=PRESETS["tiny"], settings={"ae_epochs": 5})._config().ae_epochs == 5
    with pytest.raises(Hep2Error, match="give a dict of setting names"):
        DCAEFeatures(preset="tiny", settings="ae_epochs=5")._config()
    with pytest.raises(Hep2Error, match="a folder; give the checkpoint's file name"):
        DCAEFeatures(preset="tiny", checkpoint=str(Path(__file__).parent)).fit(imgs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size=0: give the output side"),
        ({"low_pct": 99, "high_pct": 1}, "must be below"),
        ({"high_pct": 150}, r"high_pct=150: must lie in \[0, 100\]"),
        ({"views": 5}, "give a tuple of high-pass"),
        ({"scale": -1}, r"scale=-1: must lie in \[0, 16\]"),
    ],
)
def test_preprocess_checks_its_values(kwargs, message):
    with pytest.raises(Hep2Error, match=message):
        Preprocess(**kwargs)
