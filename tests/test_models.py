"""The networks: Table I layer table, the model summary command, DCAE and MLP shapes, and one
training step of the paper-exact model (slow, on demand)."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from hep2.cli import main
from hep2.models import DCAE, MLP, layer_table
from hep2.presets import PRESETS

TABLE_I = [  # (name, output (C, H, W)) from the paper's Table I, decoder map counts mirrored
    ("Input", [1, 224, 224]),
    ("Conv 1", [64, 224, 224]),
    ("Pool 1", [64, 112, 112]),
    ("Conv 2", [128, 112, 112]),
    ("Pool 2", [128, 56, 56]),
    ("Conv 3", [256, 56, 56]),
    ("Pool 3", [256, 28, 28]),
    ("Conv 4", [512, 28, 28]),
    ("Pool 4", [512, 14, 14]),
    ("Conv 5", [4096, 1, 1]),
    ("Deconv 5", [512, 14, 14]),
    ("Unpool 4", [512, 28, 28]),
    ("Deconv 4", [256, 28, 28]),
    ("Unpool 3", [256, 56, 56]),
    ("Deconv 3", [128, 56, 56]),
    ("Unpool 2", [128, 112, 112]),
    ("Deconv 2", [64, 112, 112]),
    ("Unpool 1", [64, 224, 224]),
    ("Deconv 1", [1, 224, 224]),
]
PAPER_TOTAL = 825_187_329  # 3x3 convs + 14x14x512x4096 Conv 5 and Deconv 5, with biases


def _paper_table():
    p = PRESETS["paper"]
    return layer_table(p.size, p.widths, p.latent)


def test_paper_layer_table_matches_table_I():
    t = _paper_table()
    assert [(r["name"], r["output"]) for r in t["layers"]] == TABLE_I
    rows = {r["name"]: r for r in t["layers"]}
    assert rows["Conv 5"]["params"] == 14 * 14 * 512 * 4096 + 4096
    assert rows["Deconv 5"]["params"] == 14 * 14 * 4096 * 512 + 512
    assert rows["Conv 1"]["params"] == 9 * 64 + 64
    assert rows["Deconv 1"]["params"] == 9 * 64 + 1
    assert all(r["params"] == 0 for r in t["layers"] if r["name"].startswith(("Pool", "Unpool", "Input")))
    assert t["total_params"] == PAPER_TOTAL
    assert t["total_params"] == sum(r["params"] for r in t["layers"])
    assert math.isclose(t["total_params"], 0.83e9, rel_tol=0.01)
    assert t["features"] == 4096


@pytest.mark.parametrize("preset", ["cpu", "tiny"])
def test_layer_table_counts_match_the_real_model(preset):
    p = PRESETS[preset]
    t = layer_table(p.size, p.widths, p.latent)
    model = DCAE(p.size, p.widths, p.latent)
    assert t["total_params"] == sum(q.numel() for q in model.parameters())
    rows = {r["name"]: r for r in t["layers"]}
    assert rows["Conv 5"]["output"] == [p.latent, 1, 1]
    assert rows["Pool 4"]["output"] == [p.widths[-1], p.size // 16, p.size // 16]
    assert rows["Deconv 1"]["output"] == [1, p.size, p.size]


def test_model_summary_json_cli(capsys):
    assert main(["model", "summary", "--preset", "paper", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"layers", "total_params"}
    assert out["total_params"] == PAPER_TOTAL
    assert len(out["layers"]) == len(TABLE_I)
    for row, (name, shape) in zip(out["layers"], TABLE_I):
        assert set(row) == {"name", "output", "params"}
        assert (row["name"], row["output"]) == (name, shape)
        assert isinstance(row["params"], int)


def test_model_summary_text_cli_and_overrides(capsys):
    assert main(["model", "summary", "--preset", "paper"]) == 0
    text = capsys.readouterr().out
    assert "4096 features" in text and "224x224" in text
    assert f"{PAPER_TOTAL:,}" in text
    assert "Conv 5" in text and "4096 x 1 x 1" in text
    # a command-line override changes the table: latent 128 on the tiny preset
    assert main(["model", "summary", "--preset", "tiny", "--set", "latent=128", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["name"]: r for r in out["layers"]}["Conv 5"]["output"] == [128, 1, 1]


def test_model_summary_bad_preset_is_a_clear_error(capsys):
    assert main(["model", "summary", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "huge" in err and "paper" in err and "Traceback" not in err


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_dcae_forward_and_encode_shapes(preset):
    p = PRESETS[preset]
    torch.manual_seed(0)
    model = DCAE(p.size, p.widths, p.latent).eval()
    x = torch.rand(3, 1, p.size, p.size)
    with torch.no_grad():
        rec = model(x)
        z = model.encode(x)
    assert rec.shape == (3, 1, p.size, p.size)
    assert rec.dtype == torch.float32
    assert float(rec.min()) >= 0 and float(rec.max()) <= 1  # sigmoid output
    assert z.shape == (3, p.latent)
    assert float(z.min()) >= 0  # ReLU on Conv 5
    assert model.conv5.kernel_size == (p.size // 16, p.size // 16)


def test_dcae_linear_output_and_bad_sizes():
    model = DCAE(32, (4, 4, 4, 4), 8, output="linear", latent_activation="linear")
    with torch.no_grad():
        x = torch.rand(2, 1, 32, 32)
        assert model.encode(x).shape == (2, 8)
        assert model(x).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="divisible by 16"):
        DCAE(40, (4, 4, 4, 4), 8)
    with pytest.raises(ValueError, match="4 encoder"):
        DCAE(32, (4, 4, 4), 8)


def test_mlp_shapes_and_layers():
    net = MLP(4096, (250, 50), 5, dropout=0.5)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4096, 250), (250, 50), (50, 5)]
    assert [m.p for m in net if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]
    assert net(torch.zeros(7, 4096)).shape == (7, 5)
    small = MLP(16, (), 3)
    assert small(torch.zeros(2, 16)).shape == (2, 3)


@pytest.mark.slow
def test_paper_preset_one_training_step_on_cpu():
    """One forward + backward + Adam step of the Table I model (0.83 billion parameters) at
    224x224, batch 2, on the CPU. Needs about 16 GB of memory (weights, gradients and
    two Adam moments: 4 x 3.3 GB); run with ``-m slow``."""
    import resource

    torch.manual_seed(0)
    p = PRESETS["paper"]
    t0 = time.perf_counter()
    model = DCAE(p.size, p.widths, p.latent)
    assert sum(q.numel() for q in model.parameters()) == PAPER_TOTAL
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    watch = {
        "conv1": model.encoder[0].weight,
        "conv5": model.conv5.weight,
        "deconv5": model.deconv5.weight,
        "deconv1": model.decoder[-1].weight,
    }
    # a slice across every output map: cloning all of Conv 5 / Deconv 5 would cost 3.3 GB more
    before = {k: v.detach()[:, :2].clone() for k, v in watch.items()}
    x = torch.rand(2, 1, 224, 224)
    t1 = time.perf_counter()
    rec = model(x)
    assert rec.shape == x.shape
    loss = torch.nn.functional.mse_loss(rec, x)
    opt.zero_grad()
    loss.backward()
    opt.step()
    step = time.perf_counter() - t1
    loss = float(loss.detach())
    assert math.isfinite(loss) and loss > 0
    for k, v in watch.items():
        assert not torch.equal(before[k], v.detach()[:, :2]), f"{k} did not change"
    assert all(torch.isfinite(v).all() for v in watch.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npaper preset: build {t1 - t0:.1f}s, one step {step:.1f}s, peak RSS {rss:.1f} GiB, loss {loss:.4f}")
