"""The one training loop: mini-batch Adam, early stopping on a held-out loss, progress, atomic
per-epoch checkpoints and exact resume, optional bf16 autocast."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import pickle
import platform
import time
import types
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import distributed as dd
from .data.images import atomic_write_bytes
from .errors import Hep2Error


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise Hep2Error("device 'cuda' was asked for but PyTorch sees no GPU here: use --device cpu (or auto)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise Hep2Error(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block on ``n`` intra-op threads (small networks are fastest, and immune to a busy
    machine's oversubscription, on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def use_bf16(setting, device: torch.device) -> bool:
    """Whether an ``amp`` / ``infer_amp`` setting computes in bf16 on ``device``: ``True`` / ``False`` as
    given; ``"auto"`` where bf16 is native there (:func:`bf16_is_native`)."""
    if setting == "auto":
        return bf16_is_native(torch.device(device).type)
    return bool(setting)


@functools.cache
def bf16_is_native(device_type: str = "cpu") -> bool:
    """True where bf16 arithmetic runs in hardware on this device type, so bf16 autocast is a speed-up.

    A CUDA GPU: what PyTorch says of it. A CPU: on x86 it must have AVX-512 BF16 or AMX, and, on any CPU,
    a 128x128 bf16 matrix product must take at most 3 times as long as the fp32 one (oneDNN emulates bf16
    on AVX2-only parts, Apple silicon and wherever ``ONEDNN_MAX_CPU_ISA`` caps it, where it is 25-400
    times slower). The probe takes a few milliseconds, once per process.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
            return False
    return _bf16_matmul_ratio() <= 3.0


def _bf16_matmul_ratio(n: int = 128, repeats: int = 3) -> float:
    """Seconds of a bf16 n x n matrix product over those of the fp32 one (the best of ``repeats`` each)."""
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {"fp32": math.inf, "bf16": math.inf}
    with torch_threads(1):
        for _ in range(repeats + 1):  # the first round warms both kernels up
            for name, (a, b) in (("fp32", (a32, b32)), ("bf16", (a16, b16))):
                t = time.perf_counter()
                torch.mm(a, b)
                best[name] = min(best[name], time.perf_counter() - t)
    return best["bf16"] / best["fp32"]


def precision(cfg, device: torch.device | str = "cpu") -> dict:
    """The arithmetic a preset's training and extraction use on ``device``: ``{"train": "bf16" | "fp32",
    "extract": ...}``, ``amp`` / ``infer_amp`` resolved as :func:`use_bf16` does."""
    return {
        stage: "bf16" if use_bf16(setting, device) else "fp32"
        for stage, setting in (("train", cfg.amp), ("extract", cfg.infer_amp))
    }


def save_checkpoint(path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


# where the classes and functions that models saved by hep2 0.1.0 pickled live now: 0.1.0 kept the pipeline's
# modules in hep2 itself, and its pickles name them there
MOVED_MODULES = {
    f"hep2.{m}": f"hep2.pipeline.{m}"
    for m in ("methods", "evaluation", "runner", "compare", "ensemble", "report", "predict", "export")
}
MOVED_NAMES = {
    ("hep2.ensemble", "BatchNeighbours"): "hep2.pipeline.neighbours",
    ("hep2.ensemble", "cell_features"): "hep2.pipeline.neighbours",
}


class _Unpickler(pickle.Unpickler):
    """Reads pickles that name a module of an older layout (MOVED_MODULES, MOVED_NAMES)."""

    def find_class(self, module, name):
        module = MOVED_NAMES.get((module, name)) or MOVED_MODULES.get(module, module)
        return super().find_class(module, name)


_pickle_module = types.ModuleType("hep2_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = lambda file, **kw: _Unpickler(file, **kw).load()


def load_checkpoint(path, fix: str = "delete it to start again"):
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    except Exception as e:
        raise Hep2Error(
            f"cannot load checkpoint {path} ({type(e).__name__}: {e}): it is damaged or from another version; {fix}"
        ) from None


def fit(
    model: torch.nn.Module,
    batch_loss: Callable,
    train: tuple,
    val: tuple | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    patience: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    amp: bool = False,
    fused: bool = True,
    deterministic: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 0.0,
    resume: bool = False,
    desc: str = "training",
    verbose: bool = True,
    on_epoch_end: Callable | None = None,
) -> list[dict]:
    """Train ``model`` in place and leave it at its best held-out loss; return the history.

    ``batch_loss(model, *tensors) -> (loss, n)`` computes the mean loss of one batch of the
    ``train`` / ``val`` tensors (indexed together along dim 0). ``amp``: bf16 autocast; ``fused``: the
    fused Adam kernel; ``deterministic``: on a GPU, cuDNN's deterministic kernels (the same seed gives
    the same model, and a resumed run the uninterrupted one's; the others can be faster).
    ``schedule``: ``constant`` keeps ``lr``; ``cosine`` sets epoch e's (from 0) to
    lr * (1 + cos(pi * e / epochs)) / 2, a function of the epoch alone, so resume needs no state for it.
    ``checkpoint_every``: write the checkpoint at most every this many seconds, and after the last
    epoch (0: after every epoch); the paper-size model's is 10 GB. Each epoch reseeds the random
    generators from ``seed`` and its number, so a run resumed from the checkpoint of epoch k ends with
    the same model as an uninterrupted one.
    Under torchrun (``hep2.distributed``) the processes share each global batch of ``batch_size``
    and only rank 0 writes checkpoints.
    """
    device = torch.device(device) if isinstance(device, str) else device
    if device.type == "cuda":  # TF32 for the fp32 parts on GPUs that have it (tolerance as bf16's)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.deterministic = deterministic
    model.to(device)
    # under torchrun: DistributedDataParallel, each process a share of every global batch, rank 0 writes
    world, rank = dd.world(), dd.rank()
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        gpus = None
        if device.type == "cuda":
            gpus = [device.index if device.index is not None else torch.cuda.current_device()]
        net = DistributedDataParallel(model, device_ids=gpus)
    verbose = verbose and rank == 0
    # fused: one kernel for the whole update (CPU and CUDA), the same arithmetic as the plain loop
    opt = torch.optim.Adam(
        model.parameters(),
        lr=lr,
        weight_decay=weight_decay,
        **({"fused": True} if fused else {"foreach": device.type != "cpu"}),
    )
    n = len(train[0])
    if n == 0:
        raise Hep2Error(f"{desc}: no training samples")
    history: list[dict] = []
    best, best_state, bad, start = math.inf, None, 0, 0
    best_epoch, best_file, last_save = 0, None, time.perf_counter()
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("n_train") != n:
            raise Hep2Error(
                f"checkpoint {ckpt} was made on {state.get('n_train')} training samples, this run "
                f"has {n}: resume only the same run, or remove the checkpoint"
            )
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise Hep2Error(
                f"checkpoint {ckpt} does not fit this model ({str(e).splitlines()[0]}): it was made "
                "with other settings; resume only the same run, or remove the checkpoint"
            ) from None
        history, best, bad, start = state["history"], state["best"], state["bad"], state["epoch"]
        best_epoch, best_file = state.get("best_epoch", 0), state.get("best_file", ckpt.stem + "-best.pt")
        best_state = load_checkpoint(ckpt.with_name(best_file)) if state["has_best"] else None
        if state.get("stopped"):
            start = epochs
        if verbose:
            tqdm.write(f"{desc}: resumed from {ckpt} after epoch {state['epoch']}")
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        torch.manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        net.train()
        total, seen, waited = 0.0, 0, 0.0
        bar = tqdm(
            range(0, n, batch_size), desc=f"{desc} {epoch + 1}/{epochs}", unit="batch", leave=False, disable=not verbose
        )
        for i in bar:
            t_data = time.perf_counter()
            idx = order[i : i + batch_size]
            n_global = len(idx)
            if world > 1:
                if n_global < world:  # a last batch too small to share: dropped by every process
                    continue
                idx = idx[rank::world]
            batch = [t[idx] for t in train]
            if device.type == "cuda":  # pinned host memory: the copy overlaps the previous step's kernels
                batch = [b.pin_memory() for b in batch]
            batch = [b.to(device, non_blocking=True) for b in batch]
            waited += time.perf_counter() - t_data
            with autocast(device, amp):
                loss, k = batch_loss(net, *batch)
            opt.zero_grad(set_to_none=True)
            # DDP averages the processes' gradients: weighting each share by its size gives the
            # gradient of the global batch's mean loss, as one process would compute it
            (loss * (k * world / n_global) if world > 1 else loss).backward()
            opt.step()
            total, seen = total + float(loss.detach()) * k, seen + k
            bar.set_postfix(loss=f"{total / seen:.4g}")
        total, seen = dd.all_reduce_sum([total, seen])
        train_loss = total / seen
        val_loss = evaluate_loss(model, batch_loss, val, batch_size, device, amp) if val else train_loss
        seconds = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "seconds": seconds,
                "samples_per_s": n / seconds,
                "data_seconds": waited,
            }
        )
        if val_loss < best - 1e-9:
            best, bad = val_loss, 0
            if val is not None:  # without a held-out set the last epoch is kept: no copy to hold
                # in host memory: on a GPU the paper model's copy would take 3.3 GB of the card
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best_epoch = epoch + 1
        else:
            bad += 1
        stopped = bool(patience) and bad >= patience
        if verbose:
            left = (epochs - epoch - 1) * seconds
            tqdm.write(
                f"{desc}: epoch {epoch + 1}/{epochs}  train {train_loss:.5g}  held-out {val_loss:.5g}  "
                f"{n / seconds:.1f} samples/s  {seconds:.1f}s"
                + ("  (early stop)" if stopped else f"  ~{left / 60:.1f} min left at most")
            )
        due = stopped or epoch + 1 == epochs or time.perf_counter() - last_save >= checkpoint_every
        if ckpt is not None and rank == 0 and due:
            # the best weights go to a file named by their epoch, which the checkpoint names; older ones are
            # removed only after it: a run killed between the two writes resumes with a matching pair
            if best_state is not None and best_file != f"{ckpt.stem}-best-{best_epoch}.pt":
                best_file = f"{ckpt.stem}-best-{best_epoch}.pt"
                save_checkpoint(ckpt.with_name(best_file), best_state)
            save_checkpoint(
                ckpt,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "best": best,
                    "bad": bad,
                    "has_best": best_state is not None,
                    "best_epoch": best_epoch,
                    "best_file": best_file,
                    "stopped": stopped,
                    "n_train": n,
                },
            )
            for old in ckpt.parent.glob(f"{ckpt.stem}-best*.pt"):
                if old.name != best_file:
                    old.unlink(missing_ok=True)
            last_save = time.perf_counter()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        if stopped:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@torch.inference_mode()
def evaluate_loss(model, batch_loss, data: tuple, batch_size: int, device, amp: bool = False) -> float:
    model.eval()
    total, seen = 0.0, 0
    for i in range(0, len(data[0]), batch_size):
        batch = [t[i : i + batch_size].to(device) for t in data]
        with autocast(device, amp):
            loss, k = batch_loss(model, *batch)
        total, seen = total + float(loss) * k, seen + k
    return total / max(seen, 1)


__all__ = [
    "MOVED_MODULES",
    "MOVED_NAMES",
    "autocast",
    "bf16_is_native",
    "evaluate_loss",
    "fit",
    "load_checkpoint",
    "precision",
    "resolve_device",
    "save_checkpoint",
    "torch_threads",
    "use_bf16",
]
