"""The processes of a run: where one sits, the device it trains on, and how rank 0's own work fails for all.

Work only rank 0 does (planning the run folder, writing snapshots and logs) must not fail
on rank 0 alone: the other processes would wait for it in their next collective until
the process group times out. :func:`on_rank0` runs such work, shares whether it
succeeded, and raises on every process when it did not.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Process:
    """Where this process sits among those of a distributed run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @classmethod
    def current(cls) -> Process:
        """This process's place in the initialised default process group, or alone."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


ALONE = Process()


class OtherRankError(RuntimeError):
    """Rank 0 failed at work only it does; raised on the other processes (rank 0 raises its own error)."""


def on_rank0(process: Process, work: Callable[[], T]) -> T | None:
    """``work()`` on rank 0; its JSON-able result on every process. An error on rank 0 is raised on every process."""
    if not process.distributed:
        return work()
    result, error = None, None
    if process.rank == 0:
        try:
            result = work()
        except Exception as e:  # noqa: BLE001 (re-raised below, after the others know)
            error = e
    box = [json.dumps({"ok": error is None, "message": str(error), "result": result}) if process.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    shared = json.loads(box[0])
    if error is not None:
        raise error
    if not shared["ok"]:
        raise OtherRankError(f"rank 0 failed: {shared['message']}")
    return shared["result"]


def check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a ValueError saying why not."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                             "use --device cpu")  # fmt: skip
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here")
    return device


@contextlib.contextmanager
def process_group(device: str):
    """(Process, device) of this process: alone, or one of a torchrun launch (NCCL on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check_device(device)
    if world == 1:
        yield Process(), device
        return
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield Process.current(), device
        dist.barrier()  # rank 0 may still be writing; tearing down under it aborts gloo
    finally:
        dist.destroy_process_group()
