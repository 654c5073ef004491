"""Several processes through PyTorch's own engine: ``torchrun --nproc-per-node N -m hep2 ...``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; ``init_from_env`` then joins the process group
(NCCL with GPUs, gloo on CPUs). Training (``hep2.training.fit``) wraps the model in
DistributedDataParallel and gives each process its share of every global batch; feature
extraction and prediction give each process every W-th row and gather the results in the original
order (``map_rows``); only rank 0 writes files. With one process all of this is a no-op.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from .errors import Hep2Error

_OURS = False  # True when init_from_env created the process group (then shutdown destroys it)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def init_from_env() -> torch.device | None:
    """Join the process group when started by torchrun with more than one process; return this
    process's GPU (``cuda:LOCAL_RANK``) or None."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1 or active():
        return None
    if not dist.is_available():
        raise Hep2Error("this PyTorch build has no torch.distributed: run hep2 without torchrun")
    cuda = torch.cuda.is_available()
    device = None
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    global _OURS
    _OURS = True
    return device


def shutdown(ok: bool) -> None:
    """Leave the process group before the interpreter exits: every process waits for the others
    when all went well, then the group is destroyed. Exiting with it still up lets gloo's threads
    be torn down mid-flight ("terminate called without an active exception", SIGABRT). A process
    that failed does not wait: it leaves at once, and torchrun then stops the others. A group that
    hep2 did not create (hep2 called from a caller's own distributed program) is left alone."""
    global _OURS
    if not (_OURS and dist.is_available() and dist.is_initialized()):
        return
    try:
        if ok and active():
            dist.barrier()
        dist.destroy_process_group()
    except Exception as e:  # leaving must not hide the command's own result behind a traceback
        print(f"hep2: warning: leaving the process group: {e}", file=sys.stderr)
    _OURS = False


def all_reduce_sum(values: list[float]) -> list[float]:
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def map_rows(fn, X):
    """``fn(X)`` computed by all processes together: each takes rows rank, rank + W, ...; the
    results come back to every process in the original row order."""
    if not active() or len(X) < world():
        return fn(X)
    mine = fn(X[rank() :: world()])
    parts = [None] * world()
    dist.all_gather_object(parts, mine)
    out = np.empty((len(X), *parts[0].shape[1:]), parts[0].dtype)
    for r, p in enumerate(parts):
        out[r :: world()] = p
    return out


def gather_lists(items: list) -> list:
    """Every process's list, concatenated in rank order, on every process."""
    if not active():
        return items
    parts = [None] * world()
    dist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


__all__ = [
    "active",
    "rank",
    "world",
    "is_main",
    "barrier",
    "init_from_env",
    "shutdown",
    "all_reduce_sum",
    "map_rows",
    "gather_lists",
]
