"""bf16 where the machine does it natively, fp32 elsewhere: the amp / infer_amp settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import hep2.training as training
from hep2.errors import Hep2Error
from hep2.presets import PRESETS, get_preset
from hep2.training import bf16_is_native, precision, use_bf16


def test_true_and_false_force_the_precision_and_auto_asks_the_machine(monkeypatch):
    assert use_bf16(True, "cpu") is True and use_bf16(False, "cpu") is False
    monkeypatch.setattr(training, "bf16_is_native", lambda kind="cpu": kind == "cpu")
    assert use_bf16("auto", "cpu") is True
    monkeypatch.setattr(training, "bf16_is_native", lambda kind="cpu": False)
    assert use_bf16("auto", torch.device("cpu")) is False
    assert precision(get_preset("cpu"), "cpu") == {"train": "fp32", "extract": "fp32"}
    assert precision(get_preset("cpu", overrides={"amp": "true"}), "cpu") == {"train": "bf16", "extract": "fp32"}


def test_presets_default_to_auto_and_tiny_is_fp32_everywhere():
    assert (PRESETS["paper"].amp, PRESETS["paper"].infer_amp) == ("auto", "auto")
    for name in ("cpu", "improved", "words"):  # small networks: bf16 training bought no speed
        assert (PRESETS[name].amp, PRESETS[name].infer_amp) == (False, "auto"), name
    assert precision(PRESETS["tiny"], "cpu") == {"train": "fp32", "extract": "fp32"}


@pytest.mark.parametrize(
    "given, expected", [("auto", "auto"), ("AUTO", "auto"), ("true", True), ("off", False), (True, True), (0, False)]
)
def test_amp_settings_read_auto_or_a_boolean(given, expected):
    cfg = get_preset("cpu", overrides={"amp": given, "infer_amp": given})
    assert cfg.amp == expected and cfg.infer_amp == expected


@pytest.mark.parametrize("bad", ["sometimes", "2"])
def test_an_amp_setting_that_is_neither_auto_nor_a_boolean_is_named(bad):
    with pytest.raises(Hep2Error, match=rf"setting infer_amp={bad!r}: expected a value like auto, true or false"):
        get_preset("cpu", overrides={"infer_amp": bad})


def test_the_probe_finds_bf16_emulated_when_onednn_is_capped_at_avx2():
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN compute bf16 as an AVX2-only CPU does (emulated): auto is fp32 there.
    Where this CPU has no native bf16 at all, both answers are False."""
    code = "import hep2.training as t; print(t.bf16_is_native('cpu'))"
    env = os.environ | {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert capped.stdout.strip() == "False"
    has_flags = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if not has_flags:
        assert bf16_is_native("cpu") is False
    assert bf16_is_native("meta") is False


def test_a_model_saved_by_0_1_0_with_infer_amp_true_extracts_as_auto(tmp_path):
    """0.1.0 saved infer_amp=True (its default on every machine): such a model extracts as `auto` does now, so an
    AVX2-only CPU does not emulate bf16; a model of this version keeps an explicit True."""
    from hep2.cli import main
    from hep2.pipeline.predict import Predictor
    from hep2.training import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    args = ["run", "synthetic:6", "--preset", "tiny", "--set", "ae_epochs=1", "--set", "infer_amp=true"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert Predictor(out).method.aes_[0].config_.infer_amp is True  # this version: as asked
    f = out / "model" / "pipeline.pt"
    state = load_checkpoint(f)
    save_checkpoint(f, state | {"hep2": "0.1.0"})
    old = Predictor(out)
    assert old.method.cfg.infer_amp == "auto" and old.method.aes_[0].config_.infer_amp == "auto"
