"""What a run shows while it trains: tick statistics, the progress line, stats.jsonl (and TensorBoard, wandb),
and the image grids of G_ema.

stats.jsonl has one line per tick. A run resumed from a snapshot drops the lines of
the ticks after it (they are trained again), so the file never repeats a tick.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cgsgan.atomic import atomic_write
from cgsgan.data.dataset import HeadsDataset
from cgsgan.render import render
from cgsgan.train.config import TrainConfig
from cgsgan.train.trainer import Trainer

STATS = "stats.jsonl"


@dataclass
class TickStats:
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():  # every key is kept, so all processes reduce the same ones
            finite = isinstance(v, float | int) and math.isfinite(v)
            self.sums[k] += v if finite else 0.0
            self.counts[k] += finite

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


def peak_memory_gb(device: torch.device) -> float:
    """CUDA: the allocator's peak since the last call. CPU: this process's peak resident memory so far."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak / 2**30
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


class Loggers:
    """Tick statistics to stats.jsonl always, TensorBoard when it is installed, wandb when asked for."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, wandb_project: str | None = None, log=print) -> None:
        self.jsonl = open(run_dir / STATS, "a")  # noqa: SIM115 (closed by close())
        self.tensorboard = self.wandb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir))
        except ImportError:
            pass
        if wandb_project:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("--wandb needs the wandb package: pip install wandb") from e
            self.wandb = wandb.init(project=wandb_project, dir=str(run_dir), name=run_dir.name, config=cfg.to_dict(),
                                    resume="allow")  # fmt: skip
        self.log = log

    def write(self, line: dict) -> None:
        self.jsonl.write(json.dumps(line) + "\n")
        self.jsonl.flush()
        step = round(line["kimg"] * 1000)
        scalars = {k: v for k, v in line.items() if k not in ("tick", "kimg") and isinstance(v, float | int)}
        if self.tensorboard is not None:
            for k, v in scalars.items():
                self.tensorboard.add_scalar(k, v, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        self.log(_progress_line(line))

    def close(self) -> None:
        self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def trim_stats(run_dir: Path, tick: int) -> int:
    """Drop the stats.jsonl lines of ticks after ``tick`` (atomically); how many were dropped."""
    path = run_dir / STATS
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _tick(line) <= tick]
    if len(kept) != len(lines):
        atomic_write(path, lambda f: f.write("".join(kept).encode()))
    return len(lines) - len(kept)


# ------------------------------------------------------------------ image grids
GRID_SIZE = 16  # images in a grid: 4 x 4


def _tick(line: str) -> float:
    """A line's tick; a torn or foreign line counts as after every tick (it is dropped)."""
    try:
        return json.loads(line)["tick"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def image_grid(images: Tensor, columns: int) -> np.ndarray:
    """uint8 [rows H, columns W, 3] of images [N, 3, H, W] in [0, 1]."""
    n, _, h, w = images.shape
    rows = -(-n // columns)
    padded = torch.ones(rows * columns, 3, h, w)
    padded[:n] = images.detach().float().cpu().clamp(0, 1)
    grid = padded.view(rows, columns, 3, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, columns * w, 3)
    return (grid * 255).round().to(torch.uint8).numpy()


def grid_inputs(data: HeadsDataset, z_dim: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A run's fixed grid: latents [N, z_dim], camera labels [N, 25] and the reals [N, 3, H, W] in [0, 1] they
    come with, drawn from ``seed`` (the run's) and ``data`` (the run's HeadsDataset; mirroring does not change it)."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    reals = copy.copy(data)  # the same catalog, read again over white and unflipped
    reals.background, reals.xflip = "white", False
    count = min(GRID_SIZE, len(reals))
    z = torch.randn(count, z_dim, generator=gen)
    items = [reals[i] for i in torch.randperm(len(reals), generator=gen)[:count].tolist()]
    labels = torch.stack([item["label"] for item in items])
    return z, labels, torch.stack([item["image"] for item in items]).float() / 255


def write_grid(path: Path, images: Tensor) -> None:
    """Images [N, 3, H, W] in [0, 1] as a square-ish PNG grid, written atomically."""
    import imageio.v3 as iio

    grid = image_grid(images, columns=math.ceil(math.sqrt(len(images))))
    atomic_write(path, lambda f: f.write(iio.imwrite("<bytes>", grid, extension=".png")))


class GridWriter:
    """Fixed latents and cameras, rendered by G_ema over white at every image tick, as in the reference."""

    def __init__(self, trainer: Trainer, data_path: str | os.PathLike, run_dir: Path) -> None:
        z, labels, reals = grid_inputs(trainer.data, trainer.g_cfg.z_dim, trainer.cfg.seed)
        self.z, self.labels = z.to(trainer.device), labels.to(trainer.device)
        self.trainer, self.run_dir = trainer, run_dir
        path = run_dir / "reals.png"
        if not path.exists():
            write_grid(path, reals)

    def write(self) -> Path:
        t = self.trainer
        with torch.no_grad():
            scene, _ = t.G_ema(self.z)
            images = render(scene, self.labels, t.g_cfg.resolution, background=1.0).image
        path = self.run_dir / f"fakes-{t.counters.images // 1000:06d}.png"
        write_grid(path, images)
        return path


def _progress_line(line: dict) -> str:
    losses = " ".join(f"{k} {line[k]:.3f}" for k in ("G_loss", "D_loss", "R1", "knn") if k in line)
    text = (f"tick {line['tick']:4d}  kimg {line['kimg']:8.3f}  sec/kimg {line['sec_per_kimg']:7.1f}  "
            f"mem {line['peak_memory_gb']:5.2f} GB  {losses}")  # fmt: skip
    if "disk_gb" in line:
        text += f"  disk {line['disk_gb']:.2f} GB"
    problems = [f"{line[k]} {label}" for k, label in (("skipped", "skipped steps"), ("bad_files", "unreadable files"))
                if line.get(k)]  # fmt: skip
    return text + (f"  ({', '.join(problems)})" if problems else "")
