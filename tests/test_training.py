"""The one training loop (hep2.training.fit): early stopping, best-model restore, atomic
checkpoints, and exact resume after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hep2.data.images as images_mod
import hep2.estimators as estimators_mod
from hep2.errors import Hep2Error
from hep2.estimators import DCAEFeatures
from hep2.models import MLP
from hep2.training import fit, load_checkpoint, save_checkpoint


def _mse(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y), len(x)


def _ce(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y), len(y)


def _conflicting_data(n=64):
    """Training targets y = 2x, held-out targets y = -2x: the held-out loss is lowest after the
    first epoch and then rises, so early stopping must stop and restore that first epoch."""
    g = torch.Generator().manual_seed(1)
    x, xv = torch.randn(n, 4, generator=g), torch.randn(n // 2, 4, generator=g)
    return (x, 2 * x), (xv, -2 * xv)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    train, val = _conflicting_data()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    snapshots = {}
    hist = fit(
        model,
        _mse,
        train,
        val,
        epochs=50,
        batch_size=16,
        lr=0.05,
        patience=3,
        verbose=False,
        on_epoch_end=lambda e: snapshots.__setitem__(e, _state(model)),
    )
    val_losses = [h["val_loss"] for h in hist]
    best_epoch = 1 + min(range(len(val_losses)), key=val_losses.__getitem__)
    assert len(hist) < 50  # it stopped early
    assert len(hist) == best_epoch + 3  # exactly `patience` epochs without improvement
    assert all(v > val_losses[best_epoch - 1] for v in val_losses[best_epoch:])
    assert _equal(_state(model), snapshots[best_epoch])  # ends at the best held-out loss
    assert not _equal(_state(model), snapshots[len(hist)])
    assert not model.training  # left in eval mode
    assert [h["epoch"] for h in hist] == list(range(1, len(hist) + 1))
    assert all(h["samples_per_s"] > 0 and h["seconds"] > 0 for h in hist)


def test_without_patience_all_epochs_run():
    train, val = _conflicting_data()
    hist = fit(torch.nn.Linear(4, 4), _mse, train, val, epochs=6, batch_size=16, lr=0.05, patience=0, verbose=False)
    assert len(hist) == 6
    assert all(0 <= h["data_seconds"] <= h["seconds"] for h in hist)


def test_fused_and_plain_adam_give_the_same_model():
    train, val = _conflicting_data()
    models = []
    for fused in (True, False):
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 4)
        fit(m, _mse, train, val, epochs=3, batch_size=16, lr=0.05, fused=fused, verbose=False)
        models.append(m)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_no_training_samples_is_a_clear_error():
    with pytest.raises(Hep2Error, match="no training samples"):
        fit(
            torch.nn.Linear(4, 4),
            _mse,
            (torch.zeros(0, 4), torch.zeros(0, 4)),
            epochs=1,
            batch_size=4,
            lr=0.1,
            verbose=False,
        )


def test_checkpoints_are_written_atomically(tmp_path):
    train, val = _conflicting_data()
    ckpt = tmp_path / "ck" / "model.pt"
    ckpt.parent.mkdir()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    hist = fit(model, _mse, train, val, epochs=2, batch_size=16, lr=0.05, verbose=False, checkpoint=ckpt)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["model-best-1.pt", "model.pt"]  # best: epoch 1
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and state["n_train"] == 64 and state["history"] == hist
    assert set(state) >= {"model", "optimizer", "best", "bad", "has_best", "stopped"}
    assert state["best_file"] == "model-best-1.pt" and state["best_epoch"] == 1
    assert _equal(load_checkpoint(ckpt.with_name("model-best-1.pt")), _state(model))

    # A run killed while writing its next checkpoint leaves the previous one whole and no temp file.
    def killed(src, dst):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images_mod.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            fit(
                torch.nn.Linear(4, 4),
                _mse,
                train,
                val,
                epochs=4,
                batch_size=16,
                lr=0.05,
                verbose=False,
                checkpoint=ckpt,
                resume=True,
            )
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["model-best-1.pt", "model.pt"]
    assert not list(tmp_path.rglob("*.tmp"))
    assert load_checkpoint(ckpt)["epoch"] == 2


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Hep2Error, match=r"model\.pt.*damaged"):
        fit(
            torch.nn.Linear(4, 4),
            _mse,
            _conflicting_data()[0],
            epochs=1,
            batch_size=16,
            lr=0.1,
            verbose=False,
            checkpoint=bad,
            resume=True,
        )


def test_resume_with_a_different_number_of_samples_is_refused(tmp_path):
    train, val = _conflicting_data()
    ckpt = tmp_path / "model.pt"
    fit(torch.nn.Linear(4, 4), _mse, train, val, epochs=1, batch_size=16, lr=0.05, verbose=False, checkpoint=ckpt)
    smaller = (train[0][:50], train[1][:50])
    with pytest.raises(Hep2Error) as e:
        fit(
            torch.nn.Linear(4, 4),
            _mse,
            smaller,
            val,
            epochs=2,
            batch_size=16,
            lr=0.05,
            verbose=False,
            checkpoint=ckpt,
            resume=True,
        )
    msg = str(e.value)
    assert str(ckpt) in msg and "64" in msg and "50" in msg


def test_resume_of_a_checkpoint_made_for_another_model_is_refused(tmp_path):
    train, val = _conflicting_data()
    ckpt = tmp_path / "model.pt"
    fit(torch.nn.Linear(4, 4), _mse, train, val, epochs=1, batch_size=16, lr=0.05, verbose=False, checkpoint=ckpt)
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 4))
    with pytest.raises(Hep2Error, match=r"model\.pt does not fit this model.*remove the checkpoint"):
        fit(other, _mse, train, val, epochs=2, batch_size=16, lr=0.05, verbose=False, checkpoint=ckpt, resume=True)


def _classifier_data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(90, 12, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return (x[:60], y[:60]), (x[60:], y[60:])


def _train_mlp(ckpt=None, resume=False, on_epoch_end=None, loss=_ce, epochs=6, schedule="constant"):
    train, val = _classifier_data()
    torch.manual_seed(0)
    net = MLP(12, (16,), 3, dropout=0.5)  # dropout: the random stream must resume exactly too
    hist = fit(
        net,
        loss,
        train,
        val,
        epochs=epochs,
        batch_size=8,
        lr=0.01,
        schedule=schedule,
        patience=0,
        seed=5,
        verbose=False,
        checkpoint=ckpt,
        resume=resume,
        on_epoch_end=on_epoch_end,
    )
    return net, hist


def test_mlp_resume_after_interrupt_between_epochs_is_exact(tmp_path):
    ref, ref_hist = _train_mlp()
    ckpt = tmp_path / "mlp.pt"

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train_mlp(ckpt, on_epoch_end=stop)
    assert load_checkpoint(ckpt)["epoch"] == 2
    net, hist = _train_mlp(ckpt, resume=True)
    assert _equal(_state(net), _state(ref))
    assert [h["val_loss"] for h in hist] == [h["val_loss"] for h in ref_hist]


def test_cosine_schedule_sets_each_epochs_learning_rate_and_resumes_exactly(tmp_path, monkeypatch):
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train, val = _conflicting_data(16)
    fit(torch.nn.Linear(4, 4), _mse, train, val, epochs=4, batch_size=16, lr=0.08, schedule="cosine", verbose=False)
    assert seen == pytest.approx([0.08, 0.04 * (1 + 2**-0.5), 0.04, 0.04 * (1 - 2**-0.5)])
    seen.clear()
    _train_mlp(epochs=2)
    assert set(seen) == {0.01}  # constant: the default
    ref, ref_hist = _train_mlp(schedule="cosine")
    ckpt = tmp_path / "mlp.pt"

    def stop(epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train_mlp(ckpt, on_epoch_end=stop, schedule="cosine")
    net, hist = _train_mlp(ckpt, resume=True, schedule="cosine")
    assert _equal(_state(net), _state(ref))
    assert [h["val_loss"] for h in hist] == [h["val_loss"] for h in ref_hist]
    assert not _equal(_state(ref), _state(_train_mlp()[0]))  # the schedule changed the model


def test_unknown_learning_rate_schedule_is_a_clear_error(tiny_images):
    with pytest.raises(Hep2Error, match="ae_schedule=step: choose constant or cosine"):
        DCAEFeatures("tiny", settings={"ae_schedule": "step", "ae_epochs": 1}).fit(tiny_images[:10])


def test_mlp_resume_after_kill_in_the_middle_of_an_epoch_is_exact(tmp_path):
    ref, _ = _train_mlp()
    ckpt = tmp_path / "mlp.pt"
    calls = {"n": 0}

    def dying_loss(model, x, y):
        calls["n"] += 1
        if calls["n"] == 12 * 3 + 4:  # 4th batch of epoch 4 (8 training + 4 held-out batches an epoch)
            raise KeyboardInterrupt
        return _ce(model, x, y)

    with pytest.raises(KeyboardInterrupt):
        _train_mlp(ckpt, loss=dying_loss)
    assert load_checkpoint(ckpt)["epoch"] == 3
    net, _ = _train_mlp(ckpt, resume=True)
    assert _equal(_state(net), _state(ref))


def _fake_clock(monkeypatch):
    """time.perf_counter for hep2.training that moves 1 ms a call: tests move it further by hand."""
    import hep2.training as training_mod

    clock = {"t": 0.0}

    def now():
        clock["t"] += 1e-3
        return clock["t"]

    monkeypatch.setattr(training_mod.time, "perf_counter", now)
    return clock


def _spy_saves(monkeypatch):
    import hep2.training as training_mod

    written = []
    real_save = training_mod.save_checkpoint

    def save(path, obj):
        written.append((Path(path).name, obj.get("epoch") if "optimizer" in obj else None))
        real_save(path, obj)

    monkeypatch.setattr(training_mod, "save_checkpoint", save)
    return written


def _fit_linear(ckpt, every=0.0, resume=False, on_epoch_end=None):
    """The held-out loss is lowest after epoch 1 and rises after it (``_conflicting_data``)."""
    train, val = _conflicting_data()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    fit(
        model,
        _mse,
        train,
        val,
        epochs=6,
        batch_size=16,
        lr=0.05,
        verbose=False,
        checkpoint=ckpt,
        checkpoint_every=every,
        resume=resume,
        on_epoch_end=on_epoch_end,
    )
    return model


def test_a_checkpoint_interval_writes_less_often_and_resume_stays_exact(tmp_path, monkeypatch):
    ref = _fit_linear(None)
    ckpt = tmp_path / "lin.pt"
    clock = _fake_clock(monkeypatch)
    written = _spy_saves(monkeypatch)

    def tick(epoch):  # the interval is 100 s, each epoch "takes" 40 s; stop after epoch 5
        clock["t"] += 40.0
        if epoch == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit_linear(ckpt, every=100.0, on_epoch_end=tick)
    # checks at ~0, 40, 80, 120 s (written: epoch 4) and 160 s (40 s after that write: not written); the best
    # epoch, 1, was never written before epoch 4 and is written with it
    assert written == [("lin-best-1.pt", None), ("lin.pt", 4)]
    assert load_checkpoint(ckpt)["best_file"] == "lin-best-1.pt"
    written.clear()
    model = _fit_linear(ckpt, every=100.0, resume=True)
    assert written == [("lin.pt", 6)]  # the last epoch is always written
    assert _equal(_state(model), _state(ref))  # the weights of epoch 1, read back from its file


def test_a_run_killed_between_the_best_weights_and_the_checkpoint_resumes_a_matching_pair(tmp_path, monkeypatch):
    import hep2.training as training_mod

    ref, _ = _train_mlp()  # its held-out loss falls every epoch: a new best file each epoch
    ckpt = tmp_path / "mlp.pt"
    real_save = training_mod.save_checkpoint

    def dies_at_epoch_3(path, obj):
        if Path(path).name == "mlp.pt" and obj["epoch"] == 3:
            raise KeyboardInterrupt  # after mlp-best-3.pt was written, before the checkpoint
        real_save(path, obj)

    monkeypatch.setattr(training_mod, "save_checkpoint", dies_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _train_mlp(ckpt)
    monkeypatch.setattr(training_mod, "save_checkpoint", real_save)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and state["best_file"] == "mlp-best-2.pt"
    assert _equal(load_checkpoint(tmp_path / "mlp-best-2.pt"), state["model"])  # epoch 2's own best
    net, _ = _train_mlp(ckpt, resume=True)
    assert _equal(_state(net), _state(ref))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp-best-6.pt", "mlp.pt"]


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    ckpt = tmp_path / "mlp.pt"
    ref, ref_hist = _train_mlp(ckpt)
    epochs_seen = []
    net, hist = _train_mlp(ckpt, resume=True, on_epoch_end=epochs_seen.append)
    assert epochs_seen == []
    assert hist == ref_hist
    assert _equal(_state(net), _state(ref))


# ------------------------------------------------------------------- the DCAE, through DCAEFeatures


@pytest.fixture(scope="module")
def tiny_images(synthetic_set):
    return synthetic_set("synthetic:6", 32)[0]


# augmentation and early stopping on: their random draws and counters must resume too
DCAE_SETTINGS = {
    "ae_epochs": 5,
    "ae_batch": 8,
    "ae_augment": True,
    "ae_intensity": 0.3,
    "ae_noise": 0.05,
    "ae_rotation": 30.0,
    "ae_zoom": 0.1,
    "ae_mask": 0.25,
    "ae_patience": 2,
    "ae_lr": 3e-3,
}


def _train_one_step(images, settings, monkeypatch):
    """One training step of a tiny DCAE on all ``images``: (what the network got, what its loss compared
    the reconstruction with)."""
    seen, inputs = [], []
    real_mse = torch.nn.functional.mse_loss
    monkeypatch.setattr(
        torch.nn.functional,
        "mse_loss",
        lambda rec, target: seen.append(target.detach().clone()) or real_mse(rec, target),
    )
    real_init = estimators_mod.DCAE

    def dcae(*a, **kw):
        m = real_init(*a, **kw)
        m.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach().clone()) if mod.training else None)
        return m

    monkeypatch.setattr(estimators_mod, "DCAE", dcae)
    DCAEFeatures("tiny", settings={"ae_epochs": 1, "ae_batch": 60, "ae_val_fraction": 0} | settings).fit(images)
    assert len(seen) == len(inputs) == 1
    return inputs[0].cpu(), seen[0].cpu()  # on the training device (a GPU where there is one)


def test_denoising_autoencoder_sees_noisy_input_and_learns_the_clean_image(tiny_images, monkeypatch):
    x, target = _train_one_step(tiny_images, {"ae_noise": 0.1}, monkeypatch)
    diff = (x - target).flatten()
    assert 0.05 < float(diff.std()) < 0.12  # the input is the target plus noise of std 0.1 (clipped)
    # the target is the clean image (no augmentation asked for)
    torch.testing.assert_close(
        target.sort(0).values, (torch.from_numpy(tiny_images).float()[:, None] / 255).sort(0).values
    )


def test_restoring_autoencoder_sees_jittered_grey_levels_and_learns_the_original(tiny_images, monkeypatch):
    clean = (torch.from_numpy(tiny_images).float()[:, None] / 255).sort(0).values
    x, target = _train_one_step(tiny_images, {"ae_intensity": 0.5, "ae_restore": True}, monkeypatch)
    torch.testing.assert_close(target.sort(0).values, clean)  # the target: the images as they are
    assert float((x - target).abs().mean()) > 0.01  # the input: their grey levels jittered
    # each input is a monotone map of its target's grey levels (gamma and gain, clipped)
    for xi, ti in zip(x[:8], target[:8]):
        order = ti.flatten().argsort()
        assert bool((xi.flatten()[order].diff() >= -1e-6).all())
    x, target = _train_one_step(tiny_images, {"ae_intensity": 0.5}, monkeypatch)
    torch.testing.assert_close(x, target)  # without it: the jittered image is both
    # with noise too, the noise goes on the jittered input: each image's mean shift survives it
    x, target = _train_one_step(tiny_images, {"ae_intensity": 0.5, "ae_restore": True, "ae_noise": 0.05}, monkeypatch)
    assert float((x - target).mean((1, 2, 3)).std()) > 0.02
    with pytest.raises(Hep2Error, match="ae_restore"):
        DCAEFeatures("tiny", settings={"ae_restore": True, "ae_epochs": 1}).fit(tiny_images)


def test_random_blur_blurs_each_image_by_its_own_amount_and_keeps_the_total():
    from hep2.estimators import random_blur

    torch.manual_seed(0)
    x = torch.zeros(16, 1, 15, 15)
    x[:, :, 7, 7] = 1.0
    y = random_blur(x, 2.0)
    torch.testing.assert_close(y.sum((1, 2, 3)), torch.ones(16), atol=1e-4, rtol=0)  # a point stays one unit
    peaks = y[:, 0, 7, 7]
    assert float(peaks.max()) <= 1.0 and float(peaks.min()) < 0.2 and len(set(peaks.tolist())) == 16
    assert torch.equal(random_blur(x, 0.0), x)


def test_restoring_autoencoder_learns_the_sharp_image_from_a_blurred_one(tiny_images, monkeypatch):
    x, target = _train_one_step(tiny_images, {"ae_blur": 1.5, "ae_restore": True}, monkeypatch)
    clean = (torch.from_numpy(tiny_images).float()[:, None] / 255).sort(0).values
    torch.testing.assert_close(target.sort(0).values, clean)

    # blurring lowers the contrast between neighbouring pixels
    def grad(t):
        return (t[..., 1:, :] - t[..., :-1, :]).abs().mean()

    assert float(grad(x)) < 0.9 * float(grad(target))


def test_masked_autoencoder_sees_blanked_squares_and_learns_the_whole_image(tiny_images, monkeypatch):
    x, target = _train_one_step(tiny_images, {"ae_mask": 0.5}, monkeypatch)
    # 32x32 images, 8x8 squares: each square is either kept as it is or all 0
    n = len(x)
    blocks = (x - target).abs().reshape(n, 1, 4, 8, 4, 8).amax((3, 5)) > 0
    kept = (x == target).reshape(n, 1, 4, 8, 4, 8).all(5).all(3)
    blank = (x == 0).reshape(n, 1, 4, 8, 4, 8).all(5).all(3)
    assert bool((kept | blank).all()) and not bool((blocks & kept).any())
    content = ~(target == 0).reshape(n, 1, 4, 8, 4, 8).all(5).all(3)  # squares not 0 to begin with
    assert 0.35 < float((blank & content).sum() / content.sum()) < 0.65  # about half of them were blanked
    torch.testing.assert_close(
        target.sort(0).values, (torch.from_numpy(tiny_images).float()[:, None] / 255).sort(0).values
    )


def test_patch_autoencoder_trains_on_random_crops_and_reads_whole_cells(tiny_images, monkeypatch):
    settings = {"ae_crop": 16, "features": "pooled", "ae_augment": False, "ae_intensity": 0.0, "tta": False}
    x, target = _train_one_step(tiny_images, settings, monkeypatch)
    assert x.shape[1:] == (1, 16, 16) and torch.equal(x, target)
    full = torch.from_numpy(tiny_images).float() / 255  # (N, 32, 32)
    windows = full.unfold(1, 16, 1).unfold(2, 16, 1)  # (N, 17, 17, 16, 16)
    places = set()
    for k, crop in enumerate(x[:, 0]):  # each crop: a window of an image
        hit = (windows == crop).all(-1).all(-1).nonzero()  # (image, top, left) rows
        assert len(hit), f"training input {k} is no 16x16 window of a training image"
        places.add(tuple(hit[0, 1:].tolist()))
    assert len(places) > 10  # each at a place of its own
    monkeypatch.undo()
    ae = DCAEFeatures("tiny", settings=settings | {"ae_epochs": 1, "infer_amp": False}).fit(tiny_images)
    assert ae.model_.size == 16
    with torch.no_grad():
        net = ae.model_.float().set_channels_last(False)
        torch.testing.assert_close(
            torch.from_numpy(ae.transform(tiny_images)), net.pooled(full[:, None]), rtol=1e-4, atol=1e-5
        )  # features: the whole 32x32 cell
        rec = torch.from_numpy(ae.reconstruct(tiny_images[:3]))  # given back tile by tile
        torch.testing.assert_close(
            rec[:, 16:, :16], net(full[:3, None, 16:, :16].contiguous())[:, 0], rtol=1e-4, atol=1e-5
        )
    assert rec.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "settings,message",
    [
        (
            {"ae_crop": 24, "features": "pooled"},
            "ae_crop=24: the crop side must be a multiple of 16 that divides size=32",
        ),
        ({"ae_crop": 32, "features": "pooled"}, "ae_crop=32: the crop side must be"),
        ({"ae_crop": 16, "features": "conv5"}, "ae_crop=16 with features=conv5: .* set features=pooled"),
    ],
)
def test_patch_autoencoder_settings_that_cannot_work_are_clear_errors(tiny_images, settings, message):
    with pytest.raises(Hep2Error, match=message):
        DCAEFeatures("tiny", settings=settings | {"ae_epochs": 1}).fit(tiny_images[:10])


def test_dcae_resume_after_interrupt_ends_with_identical_weights(tmp_path, tiny_images, monkeypatch):
    ref = DCAEFeatures("tiny", settings=DCAE_SETTINGS).fit(tiny_images)
    ckpt = str(tmp_path / "dcae.pt")

    real_fit = estimators_mod.fit

    def interrupted_fit(*a, **kw):
        def stop(epoch):
            if epoch == 2:
                raise KeyboardInterrupt

        return real_fit(*a, **(kw | {"on_epoch_end": stop}))

    monkeypatch.setattr(estimators_mod, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        DCAEFeatures("tiny", settings=DCAE_SETTINGS, checkpoint=ckpt).fit(tiny_images)
    monkeypatch.setattr(estimators_mod, "fit", real_fit)
    assert load_checkpoint(ckpt)["epoch"] == 2

    resumed = DCAEFeatures("tiny", settings=DCAE_SETTINGS, checkpoint=ckpt, resume=True).fit(tiny_images)
    assert resumed.history_ == [
        h | {k: r[k] for k in ("seconds", "samples_per_s", "data_seconds")}
        for h, r in zip(ref.history_, resumed.history_)
    ]
    a, b = ref.model_.state_dict(), resumed.model_.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dcae_resume_refuses_a_checkpoint_from_other_training_images(tmp_path, tiny_images):
    ckpt = str(tmp_path / "dcae.pt")
    DCAEFeatures("tiny", settings={"ae_epochs": 1}, checkpoint=ckpt).fit(tiny_images)
    with pytest.raises(Hep2Error, match="training samples"):
        DCAEFeatures("tiny", settings={"ae_epochs": 2}, checkpoint=ckpt, resume=True).fit(tiny_images[:20])


def test_save_checkpoint_roundtrip(tmp_path):
    save_checkpoint(tmp_path / "x.pt", {"a": torch.arange(3), "b": [1, 2]})
    got = load_checkpoint(tmp_path / "x.pt")
    assert torch.equal(got["a"], torch.arange(3)) and got["b"] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


@pytest.mark.parametrize(
    "key,value",
    [
        ("ae_intensity", -0.1),
        ("ae_noise", 2.0),
        ("ae_zoom", 1.5),
        ("ae_blur", 6.0),
        ("ae_rotation", 400.0),
        ("ae_mask", 1.0),
    ],
)
def test_augmentation_settings_out_of_range_are_clear_errors(tiny_images, key, value):
    with pytest.raises(Hep2Error, match=f"{key}=.*must lie in"):
        DCAEFeatures("tiny", settings={key: value, "ae_epochs": 1}).fit(tiny_images[:10])
