"""``train``: a run from its first step (or a snapshot) to its last, losing nothing when it is stopped.

Read top to bottom: find where the run starts (the run folder's newest snapshot, else
``resume_from``), check the folder agrees, build the trainer and restore, then step,
and at every tick log, and at snapshot ticks save (and measure ``cfg.metrics``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from cgsgan.train.config import Process, TrainConfig, TrainingError
from cgsgan.train.evaluation import SnapshotMetrics
from cgsgan.train.progress import GridWriter, Loggers, TickStats, peak_memory_gb, trim_stats
from cgsgan.train.runs import OPTIONS, check_continuation, record_start
from cgsgan.train.snapshots import find_snapshot, folder_bytes, latest_snapshot, restore, save_snapshot
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
    if start is None and resume_from is not None:
        start = find_snapshot(resume_from)
    if start is not None and start.state is None:
        cfg = cfg.fine_tuning(blur=resume_blur)
    started_before = continuing or (run_dir / OPTIONS).is_file()
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
    loggers = grids = None
    if writer:
        record_start(run_dir, cfg, data_path, process, start, trainer.counters.images)
        if started_before:  # the ticks after the snapshot (or all, without one) are trained again
            trim_stats(run_dir, trainer.counters.tick if continuing else 0)
        loggers = Loggers(run_dir, cfg, wandb_project, log)
        grids = GridWriter(trainer, data_path, run_dir)
        if trainer.counters.images == 0:
            grids.write()
    try:
        with reference_numerics(cfg):
            _loop(trainer, run_dir, max_steps, evaluation, loggers, grids)
    finally:
        if loggers is not None:
            loggers.close()
    return trainer


def _loop(trainer: Trainer, run_dir: Path, max_steps: int | None, evaluation, loggers, grids) -> None:
    cfg, process, counters = trainer.cfg, trainer.process, trainer.counters
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
        means = _reduce(stats.means(), process, trainer.device)
        memory = _reduce({"peak_memory_gb": peak_memory_gb(trainer.device)}, process, trainer.device)
        bad_files = _reduce({"bad_files": counters.bad_files}, process, trainer.device, mean=False)
        snapshot = counters.tick % cfg.snapshot_ticks == 0 or done
        network = save_snapshot(trainer, run_dir, cfg.keep) if snapshot and loggers is not None else None
        scores = evaluation(network) if snapshot and evaluation is not None else {}
        if loggers is not None:
            line = {
                "tick": counters.tick,
                "kimg": counters.images / 1000,
                "sec_per_kimg": elapsed / max((counters.images - tick_start) / 1000, 1e-9),
                "skipped": counters.skipped,
                "bad_files": int(bad_files["bad_files"]),
                "disk_gb": folder_bytes(run_dir) / 1e9,
                **memory,
                **means,
                **scores,
            }
            loggers.write(line)
            if counters.tick % cfg.image_ticks == 0 or done:
                grids.write()
        stats, started, tick_start = TickStats(), time.perf_counter(), counters.images


def _reduce(values: dict[str, float], process: Process, device: torch.device, mean: bool = True) -> dict:
    """The mean (or sum) of each value over the processes."""
    if not process.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / process.world if mean else t).tolist(), strict=True))
