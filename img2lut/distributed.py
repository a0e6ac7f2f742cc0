"""Multi-process training under ``torchrun``: process group, ranks, reductions, sampler, rank-0 guard.

``torchrun`` (or any launcher using PyTorch's ``env://`` rendezvous) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`setup` joins the process group when
``WORLD_SIZE`` is set, with NCCL for CUDA devices (each process takes ``cuda:LOCAL_RANK``) and gloo for the
CPU; without those variables it returns a single-process :class:`Dist` and every helper here is a no-op,
so the same training code runs with and without ``torchrun``.

Conventions: every rank computes (same data order seed, its own share of each epoch); only rank 0 writes
files and shows progress (:attr:`Dist.is_main`); models are saved unwrapped (:func:`unwrap`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(ValueError):
    """A launch environment or device that cannot work; printed as one line by the command-line tools."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``device`` is the device this rank computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when a process group is in use (launched by torchrun, even with one process)."""
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0:
        raise DistributedError(f"environment variable {name}={value!r} must be >= 0")
    return number


def launched() -> bool:
    """True when the environment of a ``torchrun`` worker is present (``WORLD_SIZE`` set)."""
    return "WORLD_SIZE" in os.environ


def rank_device(device: str | torch.device, local_rank: int) -> torch.device:
    """The device of a rank: plain ``cuda`` becomes ``cuda:LOCAL_RANK``; anything else is kept.

    An explicit ``cuda:K`` is kept too (one process per node, say), but two ranks of a node must not
    share a GPU: NCCL refuses it.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


def setup(device: str | torch.device = "cpu") -> Dist:
    """Join the ``env://`` process group if launched by torchrun, else describe a single process.

    ``device``: the requested device (``--device``); under torchrun a bare ``cuda`` maps to
    ``cuda:LOCAL_RANK``. Backend: NCCL for CUDA, gloo otherwise. Idempotent within a process.
    """
    if not launched():
        return Dist(device=torch.device(device))
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun")
    rank, world, local = (_env_int(name) for name in _ENV)
    if rank >= world or world < 1:
        raise DistributedError(f"RANK={rank} is not below WORLD_SIZE={world}")
    dev = rank_device(device, local)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError(f"--device {device}: CUDA is not available on this machine")
        if dev.index >= torch.cuda.device_count():
            raise DistributedError(f"rank {rank} wants {dev} but this node has {torch.cuda.device_count()} "
                                   "GPU(s): --nproc_per_node must not exceed the GPU count")
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # device_id binds NCCL to this rank's GPU up front (no guessing in barrier()).
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None)
    return Dist(rank=rank, world_size=world, local_rank=local, device=dev)


def current() -> Dist:
    """This process's rank and world size in the process group :func:`setup` joined (a single process
    when there is none); the device is not known here."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size())


def cleanup(wait: bool = True) -> None:
    """Leave the process group. ``wait``: after a barrier, so that no rank leaves while another still
    talks; pass False on an error path, where the other ranks may never arrive."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_mean(ctx: Dist, values: Sequence[float]) -> list[float]:
    """The mean of each value over the ranks (float64, on the device the backend needs); a single process
    gets its values back. Every rank must call it with the same number of values."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / ctx.world_size).tolist()


def any_rank(ctx: Dist, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one: lets all ranks stop at the same step
    (a rank that stopped alone would leave the others waiting in DDP's gradient all-reduce)."""
    if not ctx.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def make_sampler(ctx: Dist, n: int, seed: int, shuffle: bool = True) -> DistributedSampler:
    """The sampler of a data set of ``n`` items: this rank's ``ceil(n / world)`` indices of each epoch.

    Every rank shuffles with the same ``seed + epoch`` (call ``set_epoch(epoch)`` before each epoch) and
    takes every world-th index from its rank on; the permutation is padded by repeating its first indices
    so that all ranks take the same number of steps (DDP needs that). With one process it is a plain
    seeded shuffle of all ``n`` items.
    """
    return DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                              seed=seed, drop_last=False)


def wrap(model: nn.Module, ctx: Dist, sync_bn: bool = False) -> nn.Module:
    """``model`` for training: DDP-wrapped when a process group is in use (BatchNorm converted to
    SyncBatchNorm first if ``sync_bn``), else ``model`` itself. The conversion happens in place on the
    children, so ``model`` itself stays the module to save."""
    if not ctx.enabled:
        return model
    if sync_bn:
        if ctx.device.type != "cuda":
            raise DistributedError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers: its state dict has no ``module.`` or
    ``_orig_mod.`` prefix, so it loads into a fresh model."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch._dynamo.eval_frame.OptimizedModule
            model = model._orig_mod
        else:
            return model
