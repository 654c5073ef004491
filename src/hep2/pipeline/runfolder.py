"""A run folder: its files, each written atomically, and the checks on an existing folder before work
starts (new or resumable, the same run, room for checkpoints)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .. import distributed as dd
from ..data.images import atomic_write_bytes
from ..errors import Hep2Error
from ..presets import Preset, as_setting
from .methods import METHODS


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def environment() -> dict:
    import sklearn

    return {
        "hep2": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


DEMO_FILES = {"paper", "words", "bow", "recommended", "fields", "comparison.json", "comparison.md", "comparison.png"}
COMPARE_FILES = {"ensemble", "comparison.json", "comparison.md", "comparison.png"}  # beside one folder a method


def prepare_out(out: Path, resume: bool, kind: str = "run") -> None:
    """Make the folder of a run (kind "run"), a comparison ("compare"), an ensemble ("ensemble") or the demo
    ("demo"), after checking that it is new, or, with ``resume``, one that kind of command made."""
    if out.exists() and not out.is_dir():
        raise Hep2Error(f"--out {out} is a file: give the name of a folder to write the {kind} into")
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")} if out.exists() else set()
    if names and not resume:
        again = (
            "choose another --out, or delete it"
            if kind == "ensemble"
            else f"pass --resume to continue that {kind}, or choose another --out"
        )
        raise Hep2Error(f"{kind} folder {out} already exists and is not empty: {again}")
    if names and kind == "run" and "config.json" not in names:
        raise Hep2Error(
            f"--resume: {out} holds files but no config.json, so no run of `hep2 run` to continue: choose another --out"
        )
    allowed = {"compare": set(METHODS) | COMPARE_FILES, "demo": DEMO_FILES}.get(kind)
    if names and allowed is not None and not names <= allowed:
        foreign = ", ".join(sorted(names - allowed)[:3])
        raise Hep2Error(f"--resume: {out} is not a folder of `hep2 {kind}` (it holds {foreign}): choose another --out")
    dd.barrier()  # every process has checked before rank 0 creates anything
    if dd.is_main():
        out.mkdir(parents=True, exist_ok=True)
    dd.barrier()


def check_disk_space(out: Path, cfg: Preset) -> None:
    """Refuse, before any work, a run whose autoencoder checkpoints cannot fit on the disk of ``out``:
    each autoencoder keeps its weights and Adam state (3 values a parameter) and its best weights (1), and
    a checkpoint is written beside the old one before replacing it (3 more, once)."""
    import shutil

    from ..models.dcae import layer_table

    n = layer_table(cfg.size, cfg.widths, cfg.latent)["total_params"] * 4  # bytes of one fp32 copy
    need = max(cfg.ae_ensemble, 1) * 4 * n + 3 * n
    have = sum(f.stat().st_size for f in (out / "checkpoints").glob("*.pt")) if (out / "checkpoints").is_dir() else 0
    where = next(q for q in (out, *out.parents) if q.exists())
    free = shutil.disk_usage(where).free
    if need - have > free:
        raise Hep2Error(
            f"run folder {out}: the autoencoder checkpoints need about {(need - have) / 1e9:.1f} GB "
            f"more ({max(cfg.ae_ensemble, 1)} x {4 * n / 1e9:.2f} GB: weights, Adam state and best "
            f"weights, + {3 * n / 1e9:.2f} GB while one is rewritten) but its disk has "
            f"{free / 1e9:.1f} GB free: free space or choose --out on another disk"
        )


def run_subset(cells, protocol: str, subset: str) -> str | None:
    """The subset a run evaluates, as its config.json records it: none under official; the default
    ``train`` is ``all`` for a layout without a train split."""
    if protocol in ("official", "transfer"):
        return None
    return "all" if subset == "train" and "train" not in cells.subsets else subset


def check_same_run(out: Path, config: dict) -> None:
    """--resume continues the same run: refuse a folder made with other data or settings."""
    try:
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise Hep2Error(
            f"--resume: cannot read {out / 'config.json'} ({e}): it is not a run folder of "
            "`hep2 run`; choose another --out"
        ) from None
    old = {"method": "dcae-mlp"} | old  # folders from before other methods existed
    diff = [
        f"{k}: {old.get(k)!r} -> {config[k]!r}"
        for k in ("method", "dataset", "protocol", "subset", "autoencoder_saw_test_images")
        if k in config and old.get(k) != config[k]
    ]
    # a setting added since the folder was made had its default then
    before = Preset().to_dict() | (old.get("preset") or {})
    # the settings the method never reads may differ (the baselines ignore the autoencoder's)
    ignored = METHODS[config["method"]].ignores if config.get("method") in METHODS else frozenset()
    changed = {
        k: before.get(k)
        for k, v in config["preset"].items()
        if k not in ("description", "threads", "checkpoint_minutes", "deterministic")
        and k not in ignored
        and before.get(k) != v
    }
    diff += [f"{k}: {before[k]!r} -> {config['preset'][k]!r}" for k in changed]
    if diff:
        hint = (
            (" (to go on as it was made: " + " ".join(f"--set {k}={as_setting(v)}" for k, v in changed.items()) + ")")
            if changed
            else ""
        )
        raise Hep2Error(
            f"--resume: run folder {out} was made with other settings ({'; '.join(diff)}): resume "
            f"with the same dataset, protocol and settings{hint}, or choose another --out"
        )


def write_csv(path, header, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


__all__ = [
    "COMPARE_FILES",
    "check_disk_space",
    "check_same_run",
    "environment",
    "prepare_out",
    "run_subset",
    "write_csv",
    "write_json",
]
