"""Several processes with torchrun (gloo on this CPU): `hep2 run` and `hep2 predict` under
`torch.distributed.run --nproc-per-node 2` give what one process gives with the same global batch."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hep2.training import load_checkpoint

# dropout and augmentation off: with them each process draws its own random numbers, so only the
# arithmetic order differs between one process and two (gradients summed across processes)
RUN = [
    "run",
    "synthetic:6",
    "--protocol",
    "cv",
    "--preset",
    "tiny",
    "--set",
    "ae_epochs=3",
    "--set",
    "ae_augment=false",
    "--set",
    "dropout=0",
    "--set",
    "mlp_epochs=15",
    "--set",
    "threads=1",
    "--quiet",
]
TOL = 1e-4  # stated tolerance, absolute: the autoencoder's weights and features
TOL_PROBA = 1e-3  # the classifier's probabilities: 15 epochs of training amplify the summation order


def _hep2(args, nproc, env):
    if nproc == 1:
        cmd = [sys.executable, "-m", "hep2", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--standalone",
            "-m",
            "hep2",
            *args,
        ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _session_cache):
    root = tmp_path_factory.mktemp("dist")
    env = os.environ | {"HEP2_CACHE": str(_session_cache), "OMP_NUM_THREADS": "1"}
    _hep2(RUN + ["--out", str(root / "one")], 1, env)
    res = _hep2(RUN + ["--out", str(root / "two")], 2, env)
    return root / "one", root / "two", res, env


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_two_gloo_processes_train_the_same_dcae_as_one(runs):
    one, two, _, _ = runs
    a = load_checkpoint(one / "model/pipeline.pt")["features"].ae_.model_.state_dict()
    b = load_checkpoint(two / "model/pipeline.pt")["features"].ae_.model_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=TOL, msg=k)
    np.testing.assert_allclose(np.load(two / "features.npy"), np.load(one / "features.npy"), rtol=0, atol=TOL)


def test_two_processes_give_the_same_predictions_and_one_set_of_files(runs):
    one, two, res, _ = runs
    ra, rb = _rows(one / "predictions.csv"), _rows(two / "predictions.csv")
    assert ra[0] == rb[0] and len(ra) == len(rb)
    assert [r[:3] for r in ra[1:]] == [r[:3] for r in rb[1:]]  # split, id, true pattern
    pa = np.array([[float(v) for v in r[4:]] for r in ra[1:]])
    pb = np.array([[float(v) for v in r[4:]] for r in rb[1:]])
    np.testing.assert_allclose(pb, pa, rtol=0, atol=TOL_PROBA)
    top2 = np.sort(pa, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * TOL_PROBA  # the predicted pattern, where no near-tie
    assert clear.mean() > 0.8
    assert [r[3] for r, c in zip(ra[1:], clear) if c] == [r[3] for r, c in zip(rb[1:], clear) if c]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert (two / "environment.json").read_text().count('"processes": 2') == 1
    assert not list(two.rglob("*.tmp"))


def test_predict_shards_files_across_processes_and_keeps_their_order(runs, tmp_path):
    one, _, _, env = runs
    from hep2.data.synthetic import make_synthetic

    folder = tmp_path / "cells"
    make_synthetic(folder, per_class=2, specimens=5, seed=5)
    out1, out2 = tmp_path / "p1.csv", tmp_path / "p2.csv"
    _hep2(["predict", "--model", str(one), str(folder), "--out", str(out1)], 1, env)
    res = _hep2(["predict", "--model", str(one), str(folder), "--out", str(out2)], 2, env)
    a, b = _rows(out1), _rows(out2)
    assert len(a) == 11 and [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose(
        np.array([r[2:] for r in b[1:]], float), np.array([r[2:] for r in a[1:]], float), atol=1e-5
    )
    assert res.stdout.count("wrote 10 predictions") == 1


def test_a_killed_two_process_run_resumes_to_the_same_model(runs, tmp_path):
    """Kill a 2-process run after its first checkpoints, --resume it with 2 processes, and compare
    with an uninterrupted 2-process run (`runs`' second folder has the same settings)."""
    _, two, _, env = runs
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        "-m",
        "hep2",
        *RUN,
        "--set",
        "ae_epochs=40",
        "--set",
        "ae_patience=0",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = out / "checkpoints" / "dcae-mlp.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = load_checkpoint(ckpt)["epoch"]
    assert 3 <= epoch < 40, epoch
    _hep2([*RUN, "--set", "ae_epochs=40", "--set", "ae_patience=0", "--out", str(out), "--resume"], 2, env)
    ref = tmp_path / "whole"
    _hep2([*RUN, "--set", "ae_epochs=40", "--set", "ae_patience=0", "--out", str(ref)], 2, env)
    a = load_checkpoint(ref / "model/pipeline.pt")["features"].ae_.model_.state_dict()
    b = load_checkpoint(out / "model/pipeline.pt")["features"].ae_.model_.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
