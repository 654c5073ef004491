"""The Table II baseline CNN (Gao et al. 2017): layer sizes of GaoCNN, and CNNClassifier's
scikit-learn contract, training on synthetic cells, probabilities, string labels and TTA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone

from hep2.cnn_estimator import CNNClassifier, dihedral, random_dihedral, random_rotation
from hep2.errors import Hep2Error
from hep2.models.cnn import GaoCNN


def test_gaocnn_layer_sizes_and_output_shape():
    net = GaoCNN(5)
    x = torch.zeros(3, 1, 78, 78)
    assert net.features(x).shape == (3, 32, 3, 3)  # 78 -> 72 -> 36 -> 33 -> 11 -> 9 -> 3
    assert net.n_flat == 288
    assert net(x).shape == (3, 5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (7, 7)), (16, (4, 4)), (32, (3, 3))]
    assert net.classifier[1].out_features == 150
    # 300 + 1552 + 4640 conv, 288*150+150 F7, 150*5+5 output
    assert sum(p.numel() for p in net.parameters()) == 50597


def test_gaocnn_options_and_bad_settings():
    net = GaoCNN(3, size=64, activation="relu", batchnorm=True, dropout=0.5)
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 3)
    assert any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(Hep2Error, match="too small"):
        GaoCNN(5, size=20)
    with pytest.raises(Hep2Error, match="activation"):
        GaoCNN(5, activation="gelu")


def test_clone_and_params_roundtrip():
    clf = CNNClassifier(epochs=3, rotation=10.0, tta=False)
    p = clf.get_params()
    assert p["epochs"] == 3 and p["rotation"] == 10.0 and p["tta"] is False and p["size"] == 78
    assert p["activation"] == "tanh" and p["hidden"] == 150 and p["augment"] is True
    assert CNNClassifier().get_params()["rotation"] == 45.0
    c = clone(clf)
    assert c is not clf and c.get_params() == p and not hasattr(c, "net_")
    assert clf.set_params(lr=0.01) is clf and clf.lr == 0.01


def test_augmentations_keep_shape_and_dihedral_is_the_group_of_8():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 6, 6, generator=g)  # no symmetry: the 8 views all differ
    views = [dihedral(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    batch = torch.rand(16, 1, 10, 10, generator=g)
    torch.manual_seed(0)
    out = random_dihedral(batch)
    assert out.shape == batch.shape
    for i in range(16):  # every image is one of its own 8 views
        assert any(torch.equal(out[i : i + 1], dihedral(batch[i : i + 1], k)) for k in range(8))
    rot = random_rotation(batch, 30.0)
    assert rot.shape == batch.shape and torch.isfinite(rot).all()
    torch.testing.assert_close(random_rotation(batch, 0.0), batch, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def synth78(synthetic_set):
    """synthetic:20 (100 cells, 5 classes) preprocessed at the network's 78x78, string labels."""
    imgs, cells = synthetic_set("synthetic:20", 78)
    labels = np.array([cells.classes[i] for i in cells.y])
    return imgs, labels


@pytest.fixture(scope="module")
def fitted(synth78):
    imgs, labels = synth78
    return CNNClassifier(epochs=15, patience=0, val_fraction=0.0, lr=3e-3, seed=0, device="cpu").fit(imgs, labels)


def test_fit_beats_chance_with_string_labels(fitted, synth78):
    imgs, labels = synth78
    assert list(fitted.classes_) == sorted(set(labels)) and len(fitted.classes_) == 5
    assert len(fitted.history_) == 15
    pred = fitted.predict(imgs)
    assert pred.dtype == labels.dtype and set(pred) <= set(labels)
    assert (pred == labels).mean() >= 0.6  # chance is 0.2
    assert fitted.score(imgs, labels) == pytest.approx((pred == labels).mean())


def test_predict_proba_rows_sum_to_one_and_tta_is_rotation_invariant(fitted, synth78):
    imgs = synth78[0][::3]
    p = fitted.predict_proba(imgs)
    assert p.shape == (len(imgs), 5) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert np.all(p >= 0)
    # averaged over the 8 dihedral views, the prediction cannot depend on the orientation
    rotated = np.ascontiguousarray(np.rot90(imgs, 1, axes=(1, 2)))
    np.testing.assert_allclose(fitted.predict_proba(rotated), p, atol=1e-5)
    # float (N, 1, S, S) input in [0, 1] is the same as uint8 (N, S, S)
    np.testing.assert_allclose(fitted.predict_proba(imgs[:, None] / 255.0), p, atol=1e-5)
    single = copy.deepcopy(fitted).set_params(tta=False)
    q = single.predict_proba(imgs)
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-5)
    assert not np.allclose(single.predict_proba(rotated), q, atol=1e-5)


def test_early_stopping_uses_a_validation_part(synth78):
    imgs, labels = synth78
    clf = CNNClassifier(epochs=4, patience=1, val_fraction=0.2, augment=True, rotation=20.0, device="cpu")
    clf.fit(imgs[:60], labels[:60])
    h = clf.history_
    assert 1 <= len(h) <= 4 and all(np.isfinite(e["val_loss"]) for e in h)
    assert any(e["val_loss"] != e["train_loss"] for e in h)  # a real held-out loss, not the training loss


def test_bad_inputs_raise_hep2error(synth78):
    imgs, labels = synth78
    with pytest.raises(Hep2Error, match="78x78"):
        CNNClassifier(size=78).fit(imgs[:, :64, :64], labels)
    with pytest.raises(Hep2Error, match="two classes"):
        CNNClassifier().fit(imgs[:5], np.array(["a"] * 5))
    with pytest.raises(Hep2Error, match="labels"):
        CNNClassifier().fit(imgs[:5], labels[:4])


def test_random_intensity_and_zoom():
    from hep2.estimators import random_intensity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, 8, 8, generator=g)
    assert torch.equal(random_intensity(x, 0.0), x)
    torch.manual_seed(0)
    y = random_intensity(x, 0.5)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    # a monotone map per image: the order of the grey levels inside each image is kept
    for i in range(32):
        a, b = x[i].flatten(), y[i].flatten()
        assert torch.equal(torch.argsort(a[b < 1]), torch.argsort(b[b < 1]))
    assert len({round(float(y[i].mean() / x[i].mean()), 3) for i in range(32)}) > 20  # each its own jitter
    zoomed = random_rotation(x, 0.0, scale=0.3)
    assert zoomed.shape == x.shape and not torch.allclose(zoomed, x, atol=1e-3)


def test_resnet_arch_trains_beats_chance_and_is_rotation_invariant_with_tta(synthetic_set):
    from hep2.models.cnn import SmallResNet

    net = SmallResNet(5, (8, 16))
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 5) and net(torch.zeros(1, 1, 48, 48)).shape == (1, 5)
    imgs, cells = synthetic_set("synthetic:20", 32)
    labels = np.array([cells.classes[i] for i in cells.y])
    clf = CNNClassifier(
        size=32,
        arch="resnet",
        widths=(8, 16, 32),
        epochs=20,
        patience=0,
        val_fraction=0.0,
        lr=1e-3,
        intensity=0.3,
        scale=0.1,
        device="cpu",
    ).fit(imgs, labels)
    assert isinstance(clf.net_, SmallResNet) and len(clf.history_) == 20
    assert clf.score(imgs, labels) >= 0.6  # chance is 0.2
    rotated = np.ascontiguousarray(np.rot90(imgs[:10], 1, axes=(1, 2)))
    np.testing.assert_allclose(clf.predict_proba(rotated), clf.predict_proba(imgs[:10]), atol=1e-5)
    with pytest.raises(Hep2Error, match="arch"):
        CNNClassifier(size=32, arch="vgg").fit(imgs, labels)


def test_zoom_scales_a_centred_disk_within_its_range_and_scale_0_draws_nothing():
    yy, xx = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    disk = (((yy - 20) ** 2 + (xx - 20) ** 2) <= 8**2).float()
    x = disk.expand(64, 1, 41, 41).contiguous()
    torch.manual_seed(0)
    out = random_rotation(x, 0.0, scale=0.3)
    ratio = (out > 0.5).float().sum((1, 2, 3)) / disk.sum()
    assert float(ratio.min()) >= 0.7**2 * 0.9 and float(ratio.max()) <= 1.3**2 * 1.1
    assert float(ratio.min()) < 0.8 and float(ratio.max()) > 1.2  # both ways, over 64 draws
    torch.manual_seed(0)
    torch.rand(64)  # the angles' draw, and nothing else
    a = torch.rand(1)
    torch.manual_seed(0)
    random_rotation(x, 10.0, scale=0.0)
    assert torch.equal(torch.rand(1), a)  # scale 0: no extra random draw (same stream as before zoom)


def test_a_model_saved_before_the_newer_settings_loads_with_their_defaults(fitted, synth78):
    """The first cnn5 models were pickled before `arch`, `widths`, `intensity`, `scale` existed."""
    import pickle

    X, _ = synth78
    old = copy.deepcopy(fitted)
    for k in ("arch", "widths", "intensity", "scale"):
        del old.__dict__[k]
    loaded = pickle.loads(pickle.dumps(old))
    assert (loaded.arch, loaded.intensity, loaded.scale) == ("gao", 0.0, 0.0)
    np.testing.assert_allclose(loaded.predict_proba(X[:6]), fitted.predict_proba(X[:6]), atol=1e-6)


def test_a_model_trained_for_a_gpu_predicts_where_there_is_none_and_its_network_stays_on_the_cpu(fitted, synth78):
    """predict_proba runs on the GPU the model was trained for where this machine has one (same
    probabilities as the CPU's), else on the CPU; between calls, and when saved, the network is on the CPU."""
    import pickle

    X = synth78[0][:10]
    p = fitted.predict_proba(X)
    gpu_model = pickle.loads(pickle.dumps(copy.deepcopy(fitted).set_params(device="cuda")))
    q = gpu_model.predict_proba(X)
    np.testing.assert_allclose(q, p, atol=1e-4)  # TF32 on a GPU
    assert all(t.device.type == "cpu" for t in gpu_model.net_.parameters())
