"""``train``: a run from its first step (or a snapshot) to its last, losing nothing when it is stopped.

Read top to bottom: find where the run starts (the run folder's newest snapshot, else
``resume_from``), check the folder agrees, build the trainer and restore, then step,
and at every tick log, and at snapshot ticks save (and measure ``cfg.metrics``).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from cgsgan.train.config import TrainConfig, TrainingError
from cgsgan.train.evaluation import SnapshotMetrics
from cgsgan.train.processes import Process, on_rank0
from cgsgan.train.progress import GridWriter, Loggers, TickStats, peak_memory_gb, trim_stats
from cgsgan.train.runs import check_continuation, record_start, stored_options
from cgsgan.train.snapshots import (
    find_snapshot,
    folder_bytes,
    latest_snapshot,
    next_snapshot_name,
    restore,
    save_snapshot,
)
from cgsgan.train.trainer import Trainer, reference_numerics


def train(cfg: TrainConfig, run_dir: str | os.PathLike, data_path: str | os.PathLike, device: str = "cpu",
          log=print, max_steps: int | None = None, resume_from: str | os.PathLike | None = None,
          process: Process | None = None, wandb_project: str | None = None,
          inception: str | os.PathLike | None = None, resume_kimg: float | None = None, resume_blur: bool = False,
          force_data: bool = False) -> Trainer:  # fmt: skip
    """Train until ``cfg.kimg`` (or ``max_steps`` more steps); returns the trainer.

    Continues from the run folder's newest snapshot if it has one (the config must agree
    with the folder's, see :func:`cgsgan.train.runs.check_continuation`), else starts from
    ``resume_from`` (a run folder or a snapshot file). Weights without training state
    (imported) start a fine-tuning run as the reference's ``--resume``: no EMA ramp-up, no
    D-input blur unless ``resume_blur``, the image count from ``resume_kimg`` or the file.
    In a distributed run every process calls this with its ``process``; only rank 0 writes
    files and logs. ``cfg.metrics`` are measured on G_ema at every snapshot by all processes
    (``inception``: the feature network file, default the installed one)."""
    run_dir = Path(run_dir)
    process = process or Process.current()
    writer = process.rank == 0
    quiet = lambda _: None  # noqa: E731
    start = latest_snapshot(run_dir)
    continuing = start is not None
    options = stored_options(run_dir)
    started_before = continuing or bool(options)
    if start is None and options.get("from"):  # stopped before its first snapshot: from where it started
        resume_from, resume_kimg = options["from"], options.get("resume_kimg")
        resume_blur = options.get("resume_blur", False)
    if start is None and resume_from is not None:
        start = find_snapshot(resume_from)
    if start is not None and start.state is None:  # (a folder started so already has this config)
        cfg = cfg.fine_tuning(blur=resume_blur)
    if started_before:
        check_continuation(run_dir, cfg, data_path, force_data)
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, data_path, device, process)
    evaluation = None
    if cfg.metrics:  # built before the first step, so a missing Inception or a bad dataset fails at once
        evaluation = SnapshotMetrics(trainer, data_path, run_dir, inception, log if writer else None)
    if start is not None:
        restore(trainer, start, resume_kimg, log=log if writer else quiet)
        if writer:
            where = start.network.name if start.network.parent == run_dir else start.network
            log(f"resumed from {where} at {trainer.counters.images / 1000:.3f} kimg")
    if trainer.counters.images >= cfg.kimg * 1000 and max_steps != 0:
        raise TrainingError(f"nothing to train: the run is at {trainer.counters.images / 1000:g} kimg and its "
                            f"length is {cfg.kimg:g} kimg; pass a longer --kimg")  # fmt: skip
    trainer.broadcast()
    if not writer:
        log = quiet
    outputs = {}

    def open_outputs() -> None:  # rank 0 only; an error here stops every process
        record_start(run_dir, cfg, data_path, process, start, trainer.counters.images,
                     {"resume_kimg": resume_kimg, "resume_blur": resume_blur})  # fmt: skip
        if started_before:  # the ticks after the snapshot (or all, without one) are trained again
            trim_stats(run_dir, trainer.counters.tick if continuing else 0)
        outputs["loggers"] = Loggers(run_dir, cfg, wandb_project, log)
        outputs["grids"] = GridWriter(trainer, data_path, run_dir)
        if trainer.counters.images == 0:
            outputs["grids"].write()

    try:
        with reference_numerics(cfg):
            on_rank0(process, open_outputs)
            _loop(trainer, run_dir, max_steps, evaluation, outputs)
    finally:
        trainer._stream = None  # ends the data workers
        if "loggers" in outputs:
            outputs["loggers"].close()
    return trainer


def _loop(trainer: Trainer, run_dir: Path, max_steps: int | None, evaluation, outputs: dict) -> None:
    """Steps; at every tick the progress line, and at snapshot ticks metrics (all processes), then the snapshot."""
    cfg, process = trainer.cfg, trainer.process
    stats, started, tick_start = TickStats(), time.perf_counter(), trainer.counters.images
    peak_memory_gb(trainer.device)  # restart the peak
    steps = 0
    while trainer.counters.images < cfg.kimg * 1000 and (max_steps is None or steps < max_steps):
        stats.add(trainer.step())
        counters = trainer.counters
        steps += 1
        done = counters.images >= cfg.kimg * 1000 or (max_steps is not None and steps >= max_steps)
        if counters.images - tick_start < cfg.tick_kimg * 1000 and not done:
            continue
        counters.tick += 1
        elapsed = time.perf_counter() - started
        sums = _reduce({**stats.sums, **{f"{k} count": v for k, v in stats.counts.items()},
                        "bad_files": counters.bad_files}, process, trainer.device)  # fmt: skip
        means = {k: sums[k] / sums[f"{k} count"] for k in stats.sums if sums[f"{k} count"] > 0}
        memory = _reduce({"peak_memory_gb": peak_memory_gb(trainer.device)}, process, trainer.device)
        memory = {k: v / process.world for k, v in memory.items()}
        snapshot = counters.tick % cfg.snapshot_ticks == 0 or done
        network = run_dir / next_snapshot_name(run_dir, counters) if snapshot and process.rank == 0 else None
        scores = evaluation(network) if snapshot and evaluation is not None else {}
        line = {
            "tick": counters.tick,
            "kimg": counters.images / 1000,
            "sec_per_kimg": elapsed / max((counters.images - tick_start) / 1000, 1e-9),
            "skipped": counters.skipped,
            "bad_files": int(sums["bad_files"]),
            **memory,
            **means,
            **scores,
        }

        grid = counters.tick % cfg.image_ticks == 0 or done
        on_rank0(process, functools.partial(_write_tick, trainer, run_dir, outputs, line, snapshot, grid))
        stats, started, tick_start = TickStats(), time.perf_counter(), counters.images


def _write_tick(trainer: Trainer, run_dir: Path, outputs: dict, line: dict, snapshot: bool, grid: bool) -> None:
    """Rank 0: the tick's line first, then the snapshot (listed last), so that a kill in between leaves a line
    the resume drops (its tick is trained again), never a snapshot without its line."""
    line["disk_gb"] = folder_bytes(run_dir) / 1e9
    outputs["loggers"].write(line)
    if snapshot:
        save_snapshot(trainer, run_dir, trainer.cfg.keep)
    if grid:
        outputs["grids"].write()


def _reduce(values: dict[str, float], process: Process, device: torch.device) -> dict[str, float]:
    """The sum of each value over the processes (every process has the same keys: the same phases ran)."""
    if not process.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))
