"""Splitting feature extraction over the processes of a distributed run, and joining the results.

Metrics run on every process of an initialised process group (training at a
snapshot, or ``torchrun ... cgsgan metrics``): process r of W takes the r-th
contiguous share of the items, and all processes end with every feature in item
order, so the result does not depend on W. Alone, nothing is split.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share(count: int) -> range:
    """This process's items of ``count``: contiguous, sizes differing by at most one."""
    rank, world = rank_world()
    return range(count * rank // world, count * (rank + 1) // world)


def gather(local: Tensor, count: int) -> Tensor:
    """Every process's ``local`` rows [share, F], joined in item order: [count, F] on every process."""
    rank, world = rank_world()
    if world == 1:
        return local
    sizes = [count * (r + 1) // world - count * r // world for r in range(world)]
    padded = local.new_zeros(max(sizes), *local.shape[1:])
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def from_rank0(value: Tensor | None, shape: tuple[int, ...], device: torch.device) -> Tensor | None:
    """Rank 0's ``value`` (or its None) on every process: what rank 0 read from its disk holds for all,
    even where the processes do not share a file system."""
    rank, world = rank_world()
    if world == 1:
        return value
    flag = torch.tensor([0 if value is None else 1], device=device)
    dist.broadcast(flag, src=0)
    if not int(flag):
        return None
    buffer = value.to(device) if rank == 0 else torch.empty(shape, device=device)
    dist.broadcast(buffer, src=0)
    return buffer.cpu()


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()
