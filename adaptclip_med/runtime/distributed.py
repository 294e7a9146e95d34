"""Several processes on one job through ``torch.distributed``, started by ``torchrun``.

``torchrun --standalone --nproc_per_node N -m adaptclip_med.evaluate ...`` starts N copies of the
command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_from_env` joins them into one process group (NCCL on CUDA devices, gloo on the CPU),
each takes the work items :func:`shard` gives its rank, writes what it computed atomically, waits at
:meth:`Dist.barrier`, and rank 0 merges. Without torchrun (no ``WORLD_SIZE``, or 1) everything here is
a no-op on a single rank, so the same code runs in one plain process. Usage: docs/evaluation.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from adaptclip_med.runtime.errors import AdaptCLIPError

T = TypeVar("T")

#: How long a rank waits at a barrier for the others (a slow rank encoding ViT-L on a CPU).
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job.

    Attributes:
        rank: 0 … ``world_size - 1``; rank 0 merges and writes the shared outputs.
        world_size: number of processes (1 without torchrun).
        local_rank: index on this machine (picks the GPU: ``cuda:<local_rank>``).
        backend: ``"nccl"``, ``"gloo"`` or ``""`` (single process, no group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that merges and writes tables and reports)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group joins several ranks."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op on one rank)."""
        if self.active:
            dist.barrier()

    def all_ok(self, ok: bool) -> bool:
        """True when ``ok`` on every rank (one rank's failure stops all of them at the same point)."""
        if not self.active:
            return ok
        flag = torch.tensor([0 if ok else 1], dtype=torch.int64,
                            device=f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu")
        dist.all_reduce(flag)
        return int(flag.item()) == 0

    def total(self, values: Sequence[int]) -> list[int]:
        """Element-wise sum of ``values`` over all ranks (every rank gets the sums)."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.int64,
                         device=f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu")
        dist.all_reduce(t)
        return [int(v) for v in t.tolist()]

    def close(self) -> None:
        """Leave the process group (call once, at the end)."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def together(ctx: Dist, step: Callable[[], T]) -> T:
    """Run ``step`` on every rank, then wait until all have finished it (a barrier that sees failures).

    When ``step`` raises on one rank, every rank stops here instead of waiting for it forever: the
    failing rank re-raises its error, the others raise :class:`AdaptCLIPError` pointing at it.
    """
    try:
        value = step()
    except BaseException:
        ctx.all_ok(False)
        raise
    if not ctx.all_ok(True):
        msg = f"rank {ctx.rank}: stopped because another rank failed (its error is printed above)"
        raise AdaptCLIPError(msg)
    return value


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        msg = f"environment variable {name}={value!r}: expected an integer (set by torchrun)"
        raise AdaptCLIPError(msg) from None


def init_from_env(device: str = "cpu") -> tuple[Dist, str]:
    """Join the torchrun job described by the environment; return it and this rank's device.

    Args:
        device: the ``--device`` given (``cpu``, ``cuda``, ``cuda:1``, ``mps``). Under torchrun a
            ``cuda`` device becomes ``cuda:<LOCAL_RANK>``: one GPU per process.

    Raises:
        AdaptCLIPError: several ranks with a device they cannot share (``mps``), more local ranks than
            GPUs, or malformed torchrun variables.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist(), device
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    kind = torch.device(device).type
    if kind == "cuda":
        if local >= torch.cuda.device_count():
            msg = (f"torchrun: local rank {local} but {torch.cuda.device_count()} GPU(s) visible; start at most "
                   "--nproc_per_node <number of GPUs> processes per machine")
            raise AdaptCLIPError(msg)
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
        backend = "nccl"
    elif kind == "cpu":
        backend = "gloo"
    else:
        msg = f"torchrun with --device {device}: several processes need cpu (gloo) or cuda (nccl) devices"
        raise AdaptCLIPError(msg)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    return Dist(rank, world, local, backend), device


def shard(items: Sequence[T], ctx: Dist, key: Callable[[T], str]) -> list[T]:
    """This rank's items: sorted by ``key`` (a content key), then every ``world_size``-th from ``rank``.

    The assignment depends only on the keys and the world size, so every rank computes the same split
    without talking to the others, and a re-run (after a rank was killed) gives each rank the same items.
    """
    ordered = sorted(items, key=key)
    return ordered[ctx.rank::ctx.world_size]


def owner(index: int, ctx: Dist) -> int:
    """Rank that owns the ``index``-th work unit in a fixed order (round robin)."""
    return index % ctx.world_size
