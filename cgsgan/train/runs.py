"""Run folders, and setting a run up from what a user asks for.

Each new run gets its own numbered folder under an output folder, as StyleGAN's:
``out/train/00000-tiny64-synth``, ``00001-ffhqc512-FFHQC``. A folder is never reused
by accident: continuing a run names its folder (``resume=RUN_DIR``), and a snapshot
file (``resume=FILE``) starts a new folder from it.

Which settings win: a continued run keeps its stored config (the newest snapshot's),
and may only change how it is carried out (its length, logging, saving, workers: the
``RUN_SETTINGS``); a run from a snapshot file takes that snapshot's config, then the
options given; a run from imported weights takes the preset and revision of the file;
a new run takes the preset's defaults, then the options given.

``training_options.json`` is written once, atomically, when a run starts; every later
start of the same folder appends a line to ``resumes.jsonl``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cgsgan.atomic import atomic_write
from cgsgan.config import PRESETS
from cgsgan.train.config import RUN_SETTINGS, TrainConfig, TrainingError
from cgsgan.train.processes import ALONE, Process, on_rank0
from cgsgan.train.snapshots import Snapshot, find_snapshot, latest_snapshot, snapshot_config, snapshot_training

OPTIONS = "training_options.json"
RESUMES = "resumes.jsonl"
DEFAULT_OUTDIR = "out/train"


# ------------------------------------------------------------------ folders
def run_description(cfg: TrainConfig) -> str:
    """``<preset>-<dataset name>``: what a numbered run folder is called after its number."""
    data = "synth" if cfg.data is None else Path(cfg.data).name.removesuffix(".zip")
    return f"{cfg.preset}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', data) or 'data'}"


def new_run_dir(outdir: str | os.PathLike, description: str) -> Path:
    """Create ``outdir/<next number>-<description>`` and return it."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for p in outdir.iterdir() if (m := re.match(r"(\d{5,})-", p.name))]
        path = outdir / f"{max(numbers, default=-1) + 1:05d}-{description}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another start took the number
            continue


def stored_config(run_dir: str | os.PathLike) -> TrainConfig | None:
    """The config a run folder continues with: its newest snapshot's, else the one it was started with."""
    run_dir = Path(run_dir)
    snapshot = latest_snapshot(run_dir)
    values = snapshot_config(snapshot) if snapshot is not None else None
    if values is None and (run_dir / OPTIONS).is_file():
        values = json.loads((run_dir / OPTIONS).read_text())["config"]
    return TrainConfig.from_dict(values) if values is not None else None


def stored_options(run_dir: Path) -> dict:
    """What a run folder was started with (training_options.json), or {}."""
    path = run_dir / OPTIONS
    return json.loads(path.read_text()) if path.is_file() else {}


def check_continuation(run_dir: Path, cfg: TrainConfig, data_path: str | os.PathLike, force_data: bool) -> None:
    """Refuse to continue ``run_dir`` with a config that defines another run, or (unless ``force_data``) other data."""
    stored = stored_config(run_dir)
    if stored is None:
        return
    changed = {k: v for k, v in stored.differences(cfg).items() if k not in RUN_SETTINGS | {"data"}}
    if changed:
        text = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise TrainingError(f"{run_dir} was trained with other settings ({text}); continue it with its own, or "
                            "start a new run from its snapshot (resume from the snapshot file)")  # fmt: skip
    if _resolved(stored.data) != _resolved(cfg.data) and not force_data:
        raise TrainingError(f"{run_dir} was trained on {stored.data or 'the built-in heads'}, not "
                            f"{cfg.data or 'the built-in heads'}; pass --force-data (force_data=True) to continue "
                            "it on other data")  # fmt: skip


def _resolved(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def record_start(run_dir: Path, cfg: TrainConfig, data_path: str | os.PathLike, process: Process,
                 start: Snapshot | None, images: int, resume: dict) -> None:  # fmt: skip
    """training_options.json for a new run folder; a line in resumes.jsonl for every later start.

    ``resume`` (resume_kimg, resume_blur) is stored with the snapshot the run starts from, so that a run
    stopped before its first snapshot starts from it again."""
    options = run_dir / OPTIONS
    if not options.is_file():
        text = json.dumps({"config": cfg.to_dict(), "data": str(data_path), "processes": process.world,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "from": str(start.network.resolve()) if start else None, **resume}, indent=2)  # fmt: skip
        atomic_write(options, lambda f: f.write(text.encode()))
        return
    previous = stored_config(run_dir)
    line = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "kimg": images / 1000, "processes": process.world,
            "data": str(data_path), "from": str(start.network) if start else None,
            "changed": {k: list(v) for k, v in (previous.differences(cfg) if previous else {}).items()}}  # fmt: skip
    with open(run_dir / RESUMES, "a") as f:
        f.write(json.dumps(line) + "\n")


# ------------------------------------------------------------------ plans
@dataclass(frozen=True)
class RunPlan:
    """What ``train`` gets: the config, the run folder and the snapshot a new folder starts from."""

    cfg: TrainConfig
    run_dir: Path
    resume_from: Path | None = None  # a snapshot file a new folder starts from; None to continue or start fresh
    continuing: bool = False


def plan_run(outdir: str | os.PathLike = DEFAULT_OUTDIR, resume: str | os.PathLike | None = None,
             preset: str | None = None, overrides: dict | None = None, create: bool = True) -> RunPlan:  # fmt: skip
    """Resolve a run from what a user asked for (see the module docstring); ``create`` makes a new run's folder.

    ``overrides`` are TrainConfig fields; those that are None are ignored."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in ("data", "distribution"):  # stored absolute: a run continues from any working directory
        if key in overrides:
            overrides[key] = _resolved(overrides[key])
    path = Path(resume) if resume is not None else None
    if path is not None and path.is_dir():
        stored = stored_config(path)
        if stored is None:
            raise FileNotFoundError(f"{path} is not a run folder: it has no {OPTIONS} and no snapshot with "
                                    "its training state")  # fmt: skip
        _check_preset(path, stored.preset, preset)
        cfg = _clamp_views(TrainConfig.from_dict({**stored.to_dict(), **overrides}))
        snapshot = latest_snapshot(path)
        images = (snapshot_training(snapshot.network) or {}).get("images", 0) if snapshot else 0
        if images >= cfg.kimg * 1000:
            raise TrainingError(f"{path} is finished: it trained {images / 1000:g} of its {cfg.kimg:g} kimg; "
                                "pass a longer --kimg to continue it")  # fmt: skip
        return RunPlan(cfg, path, None, continuing=True)
    if path is not None:
        snapshot = find_snapshot(path)
        stored = snapshot_config(snapshot)
        if stored is not None:
            _check_preset(snapshot.network, stored["preset"], preset)
            cfg = TrainConfig.from_dict({**stored, **overrides})
        else:  # imported weights: the preset and revision are the file's
            found, revision = imported_preset(snapshot.network, preset)
            cfg = TrainConfig.for_preset(found, revision=revision, **overrides)
    else:
        cfg = TrainConfig.for_preset(preset or "tiny64", **overrides)
    cfg = _clamp_views(cfg)
    run_dir = new_run_dir(outdir, run_description(cfg)) if create else Path(outdir) / run_description(cfg)
    return RunPlan(cfg, run_dir, path, continuing=False)


def _check_preset(where: Path, stored: str, asked: str | None) -> None:
    if asked is not None and asked != stored:
        raise ValueError(f"{where} was trained with --preset {stored}, not {asked}")


def _clamp_views(cfg: TrainConfig) -> TrainConfig:
    """Fewer views than asked when a smaller batch per pass cannot show each scene from that many cameras."""
    limit = cfg.batch_gpu or cfg.batch
    return TrainConfig.from_dict({**cfg.to_dict(), "views": limit}) if cfg.views > limit else cfg


def imported_preset(network: Path, preset: str | None) -> tuple[str, str]:
    """(preset, revision) of a network file without training state; ``preset`` must agree when given."""
    from cgsgan.config import GeneratorConfig, find_preset
    from cgsgan.io.checkpoint import read_metadata

    cfg = GeneratorConfig.from_dict(json.loads(read_metadata(network)["generator"]))
    found = find_preset(cfg)
    if found is None and preset is None:
        raise ValueError(f"{network} matches no preset; its generator is {cfg}")
    if preset is not None and found is not None and preset != found:
        raise ValueError(f"{network} holds a {found} generator, not {preset}")
    return preset or found, cfg.revision


# ------------------------------------------------------------------ processes
def synthetic_heads(resolution: int, process: Process = ALONE) -> str:
    """The built-in synthetic heads' folder at ``resolution``; generated by rank 0 while the others wait."""
    from cgsgan.data.cache import default_dataset

    made = on_rank0(process, lambda: str(default_dataset(resolution=resolution)))  # the others wait, then find it
    return made if process.rank == 0 else str(default_dataset(resolution=resolution, progress=False))


def training_data(cfg: TrainConfig, process: Process = ALONE) -> str:
    """The dataset a run trains on: ``cfg.data``, else the built-in heads at the preset's resolution."""
    if cfg.data is not None:
        return cfg.data
    return synthetic_heads(PRESETS[cfg.preset].generator.resolution, process)


def prepare_run(outdir: str | os.PathLike = DEFAULT_OUTDIR, resume: str | os.PathLike | None = None,
                preset: str | None = None, overrides: dict | None = None,
                process: Process = ALONE) -> RunPlan:  # fmt: skip
    """:func:`plan_run` on rank 0 (which creates a new folder), the same plan on every other process."""

    def plan() -> dict:
        p = plan_run(outdir, resume, preset, overrides)
        return {"cfg": p.cfg.to_dict(), "run_dir": str(p.run_dir), "continuing": p.continuing,
                "resume_from": str(p.resume_from) if p.resume_from else None}  # fmt: skip

    plan = on_rank0(process, plan)
    return RunPlan(TrainConfig.from_dict(plan["cfg"]), Path(plan["run_dir"]),
                   Path(plan["resume_from"]) if plan["resume_from"] else None, plan["continuing"])  # fmt: skip
