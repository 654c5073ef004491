"""DCAE performance: hep2's training and extraction against the plain reference, in the same run.

    python benchmarks/run.py [--preset paper|cpu|all] [--json FILE]

For each preset it measures, each in a fresh subprocess (so peak memory is that measurement's own):
- training images/s and seconds per step at the stated batch (hep2: the `hep2.training.fit` loop
  with the preset's settings; reference: benchmarks/reference.py), after one warm-up pass;
- the fraction of the step spent waiting for data;
- achieved GFLOP/s (FLOPs of a step counted by torch.utils.flop_counter) against the machine's
  fp32 matmul peak, measured in the same run (2048x2048 matmuls);
- feature extraction (encoder only; the best of 3 passes on both sides) and full prediction
  (encoder + classifier) cells/s;
- peak RSS (and peak device memory on a GPU).
Random images stand in for cells (speed does not depend on the content). Augmentation and
test-time averaging are off on both sides, so both do the same arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# batch sizes and step counts: small enough that `--preset all` ends within 10 minutes on 2 cores
# (paper: one measured step after the warm-up; the plain reference takes over 3 minutes a step on an AVX2-only CPU)
PLAN = {"paper": {"batch": 32, "steps": 1, "extract": 64}, "cpu": {"batch": 32, "steps": 8, "extract": 1024}}
EXTRACT_REPEATS = 3  # extraction is timed up to this many times on both sides (best_seconds), the best kept


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def matmul_gflops(dtype_name: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """The best of ``repeats`` n x n matrix products, in GFLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def best_seconds(work, repeats: int = EXTRACT_REPEATS, budget_s: float = 10.0) -> float:
    """The shortest of up to ``repeats`` runs of ``work()`` (the least disturbed by other load on the machine),
    stopping once ``budget_s`` seconds are spent: a pass that long is timed well enough once."""
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        work()
        took = time.perf_counter() - t
        best, spent = min(best, took), spent + took
        if spent >= budget_s:
            break
    return best


def step_gflop(size, widths, latent, batch) -> float:
    """FLOPs of one training step (forward + backward) of Table I at this size, per image."""
    import torch
    from reference import ReferenceDCAE
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = ReferenceDCAE(size, widths, latent)
        x = torch.zeros(batch, 1, size, size)
    with FlopCounterMode(display=False) as fc:
        torch.nn.functional.mse_loss(m(x), x).backward()
    return fc.get_total_flops() / batch / 1e9


def worker(preset: str, impl: str) -> dict:
    """One measurement in this process: training then extraction, for ``impl`` ours|reference."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from hep2.presets import get_preset

    cfg = get_preset(preset).override({"ae_augment": False, "tta": False, "ae_val_fraction": 0.0})
    plan = PLAN[preset]
    batch, steps = plan["batch"], plan["steps"]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = torch.cuda.is_available()
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (batch * steps, cfg.size, cfg.size), dtype=np.uint8)
    out = {"batch": batch, "steps": steps, "threads": torch.get_num_threads()}
    if impl == "reference":
        from reference import ReferenceDCAE, extract, train_steps

        torch.manual_seed(0)
        dev = "cuda" if cuda else "cpu"
        model = ReferenceDCAE(cfg.size, cfg.widths, cfg.latent).to(dev)
        x = torch.from_numpy(imgs[:, None]).float().div(255).to(dev)
        sec = train_steps(model, x, batch, steps)
        out.update(img_s=batch / sec, step_s=sec, data_wait_fraction=0.0)
        ex = torch.from_numpy(rng.integers(0, 256, (plan["extract"], 1, cfg.size, cfg.size), dtype=np.uint8))
        extract(model, ex[:batch].float().div(255).to(dev))  # warm-up
        # the conversion is part of the work
        out["extract_cells_s"] = plan["extract"] / best_seconds(lambda: extract(model, ex.float().div(255).to(dev)))
        out["predict_cells_s"] = None
    else:
        from hep2.estimators import DCAEFeatures, MLPHead

        ae = DCAEFeatures(cfg.override({"ae_epochs": 2, "ae_batch": batch}))
        ae.fit(imgs)  # epoch 1 is the warm-up; epoch 2 is measured
        h = ae.history_[-1]
        out.update(
            img_s=h["samples_per_s"], step_s=h["seconds"] / steps, data_wait_fraction=h["data_seconds"] / h["seconds"]
        )
        ex = rng.integers(0, 256, (plan["extract"], cfg.size, cfg.size), dtype=np.uint8)
        ae.transform(ex[:batch])
        out["extract_cells_s"] = len(ex) / best_seconds(lambda: ae.transform(ex))
        feats = ae.transform(ex)
        head = MLPHead(epochs=2, patience=0, val_fraction=0).fit(feats, np.arange(len(feats)) % 5)
        t = time.perf_counter()
        head.predict_proba(ae.transform(ex))
        out["predict_cells_s"] = len(ex) / (time.perf_counter() - t)
    out["peak_rss_gib"] = peak_rss_gib()
    if cuda:
        out["peak_device_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_worker(preset: str, impl: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", preset, impl]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"benchmark worker {preset}/{impl} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    import torch

    from hep2.training import bf16_is_native

    device = "cuda" if torch.cuda.is_available() else "cpu"
    native = bf16_is_native(device)
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": "cpu",
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "bf16_native": native,
        "matmul_gflops": round(matmul_gflops("float32"), 1),
        # emulated bf16 runs at well under 1 GFLOP/s: a smaller product measures it in seconds
        "matmul_bf16_gflops": round(matmul_gflops("bfloat16", *((2048, 5) if native else (512, 1))), 1),
    }
    if device == "cuda":
        info["device"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["paper", "cpu", "all"], default="all")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    from hep2.presets import get_preset
    from hep2.training import precision

    t0 = time.perf_counter()
    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}; "
        f"matmul peak fp32 {machine['matmul_gflops']} GFLOP/s, bf16 {machine['matmul_bf16_gflops']} GFLOP/s; "
        f"bf16 {'native' if machine['bf16_native'] else 'emulated'} here"
        f"{', ONEDNN_MAX_CPU_ISA=' + machine['onednn_max_cpu_isa'] if machine['onednn_max_cpu_isa'] else ''}",
        flush=True,
    )
    results = {"machine": machine, "presets": {}}
    for preset in ["cpu", "paper"] if args.preset == "all" else [args.preset]:
        cfg = get_preset(preset)
        gflop = step_gflop(cfg.size, cfg.widths, cfg.latent, PLAN[preset]["batch"])
        ours, ref = run_worker(preset, "ours"), run_worker(preset, "reference")
        achieved = gflop * ours["img_s"]
        results["presets"][preset] = {
            "settings": {
                k: getattr(cfg, k)
                for k in ("size", "amp", "channels_last", "infer_amp", "infer_channels_last", "fused_adam", "threads")
            }
            | {"precision": precision(cfg, machine["device"] if machine["device"] == "cpu" else "cuda")},
            "train": {
                "ours": ours["img_s"],
                "reference": ref["img_s"],
                "ratio": ours["img_s"] / ref["img_s"],
                "step_s": ours["step_s"],
                "reference_step_s": ref["step_s"],
                "gflop_per_image": gflop,
                "gflops": achieved,
                "reference_gflops": gflop * ref["img_s"],
                "peak_fraction": achieved / machine["matmul_gflops"],
                "data_wait_fraction": ours["data_wait_fraction"],
                "peak_rss_gib": ours["peak_rss_gib"],
                "reference_peak_rss_gib": ref["peak_rss_gib"],
                "batch": ours["batch"],
            },
            "extract": {
                "ours": ours["extract_cells_s"],
                "reference": ref["extract_cells_s"],
                "ratio": ours["extract_cells_s"] / ref["extract_cells_s"],
            },
            "predict": {"ours": ours["predict_cells_s"]},
        }
        if "peak_device_gib" in ours:
            results["presets"][preset]["train"]["peak_device_gib"] = ours["peak_device_gib"]
        print(table(preset, results["presets"][preset]), flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"total {results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


def table(preset: str, r: dict) -> str:
    t, e = r["train"], r["extract"]
    s = r["settings"]
    return "\n".join(
        [
            f"\npreset {preset} ({s['size']}x{s['size']}; training: {s['precision']['train']} (amp={s['amp']}), "
            f"channels_last={s['channels_last']}, fused_adam={s['fused_adam']}; "
            f"extraction: {s['precision']['extract']} "
            f"(infer_amp={s['infer_amp']}), channels_last={s['infer_channels_last']}), batch {t['batch']}",
            f"  {'':24}{'ours':>10}{'reference':>12}{'ratio':>8}",
            f"  {'train images/s':24}{t['ours']:>10.2f}{t['reference']:>12.2f}{t['ratio']:>8.2f}",
            f"  {'train s/step':24}{t['step_s']:>10.2f}{t['reference_step_s']:>12.2f}",
            f"  {'train GFLOP/s':24}{t['gflops']:>10.1f}{t['reference_gflops']:>12.1f}"
            f"   ({t['peak_fraction']:.0%} of the fp32 matmul peak)",
            f"  {'peak RSS GiB':24}{t['peak_rss_gib']:>10.2f}{t['reference_peak_rss_gib']:>12.2f}",
            f"  {'data wait':24}{t['data_wait_fraction']:>10.1%}",
            f"  {'extract cells/s':24}{e['ours']:>10.1f}{e['reference']:>12.1f}{e['ratio']:>8.2f}",
            f"  {'predict cells/s':24}{r['predict']['ours']:>10.1f}",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
