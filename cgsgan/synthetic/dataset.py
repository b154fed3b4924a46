"""The built-in synthetic heads dataset: random parametric heads rendered from FFHQ-like cameras.

    synthesize_dataset("out/synth64", count=5000, resolution=64, seed=0)

writes, one image per head identity (many distinct identities suit GAN
training better than many views of a few):

    out_dir/00000.png ...         RGB uint8, the head over a white background
    out_dir/mask/00000.png ...    grayscale uint8, round(alpha * 255)
    out_dir/dataset.json          {"labels": [["00000.png", [25 floats]], ...]}  (EG3D camera labels)
    out_dir/attributes.csv        file,yaw_deg,pitch_deg,smile  (one row per image)
    out_dir/scenes/00000.ply ...  the ground-truth scenes of the first ``ply_count`` images
    out_dir/synth.json            the generation settings

``dataset.json`` is written last (through a temporary name and a rename), so
a folder without it is an interrupted run.

Heads come from :func:`cgsgan.synthetic.params.sample_head_params` and a
:class:`cgsgan.synthetic.builder.HeadBuilder` (framed like FFHQC's whole-head
crops, see there); cameras from :func:`sample_poses`:
yaw (azimuth from the frontal view, + toward +x) and pitch (elevation, + =
camera above) are truncated normals at 3 standard deviations, so most views
are near frontal with tails to the sides, as in FFHQ. Cameras sit at radius
2.7 with focal 4.2647 (FoV 13.4 deg) and look at the origin, which puts the
point between the eyes and the mouth at the image centre as FFHQ's alignment
does.

Everything is a function of ``seed``: the same seed gives byte-identical
files, whatever the number of ``workers`` (forked processes that build and
render batches of heads, one thread each). Image i shows the same head from
the same camera whatever ``count`` is. About 2 minutes for 5,000 images at 64
px on two cores, 45 s for 1,000 at 128 px.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import numbers
import os
import queue
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from cgsgan.atomic import atomic_write
from cgsgan.camera import DEFAULT_FOCAL, DEFAULT_RADIUS, orbit_labels
from cgsgan.gaussians import GaussianScene
from cgsgan.io import write_ply
from cgsgan.render import render
from cgsgan.synthetic.builder import HeadBuilder
from cgsgan.synthetic.params import HeadParams, sample_head_params

__all__ = [
    "DEFAULT_GAUSSIANS",
    "SYNTH_VERSION",
    "default_gaussians",
    "head_seed",
    "pose_labels",
    "sample_poses",
    "synthesize_dataset",
]

SYNTH_VERSION = 2  # bump whenever the same settings would give different files (2: heads framed like FFHQC)
DEFAULT_GAUSSIANS = {16: 4000, 32: 4000, 64: 4000, 128: 8000, 256: 16000}  # per resolution; larger: 32000
YAW_STD = 20.0  # degrees
PITCH_STD = 6.0  # degrees
TRUNCATION = 3.0  # poses are drawn within this many standard deviations
LOOKAT = (0.0, 0.0, 0.0)
BATCH = 64  # heads rendered per render call
MASK_DIR = "mask"
SCENE_DIR = "scenes"


# ------------------------------------------------------------------ cameras
def sample_poses(
    count: int, gen: torch.Generator, yaw_std: float = YAW_STD, pitch_std: float = PITCH_STD
) -> tuple[Tensor, Tensor]:
    """FFHQ-like head poses: yaw_deg [count] and pitch_deg [count] (float64, degrees).

    yaw_deg is the camera's azimuth from the frontal view (+ toward +x),
    pitch_deg its elevation above the horizontal (+ = camera above); both are
    normal with the given standard deviations (degrees), truncated at 3 of them
    (by default yaw within +-60 deg, 68% within +-20; pitch within +-18).
    Drawn by inverse CDF (exact, no rejection), one (yaw, pitch) row per pose,
    so the first poses do not depend on ``count``.
    """
    lo = 0.5 * math.erfc(TRUNCATION / math.sqrt(2))  # Phi(-TRUNCATION)
    u = lo + (1 - 2 * lo) * torch.rand(count, 2, generator=gen, dtype=torch.float64)
    z = torch.special.ndtri(u)
    return yaw_std * z[:, 0], pitch_std * z[:, 1]


def pose_labels(yaw_deg: Tensor, pitch_deg: Tensor) -> Tensor:
    """Camera labels [N, 25] (float32) for yaw_deg [N] and pitch_deg [N] as :func:`sample_poses`
    gives them: :func:`cgsgan.camera.orbit_labels` (radius 2.7, focal 4.2647, looking at the origin)."""
    return orbit_labels(yaw_deg, pitch_deg)


# -------------------------------------------------------------------- heads
def head_seed(seed: int, index: int) -> int:
    """The head identity seed of image ``index`` of a dataset (splitmix64 of the pair): distinct
    for every image and dataset seed, and independent of the dataset's size."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) >> 1  # 63 bits: a valid torch seed


def default_gaussians(resolution: int) -> int:
    """Gaussians per head for a resolution: enough for discs no wider than a few pixels."""
    return DEFAULT_GAUSSIANS.get(resolution, 32000)


# ----------------------------------------------------------------- checking
def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_std(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 90:
        raise ValueError(f"{name} must be a number of degrees in (0, 90], got {value!r}")
    return float(value)


def _check_out_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"out_dir {str(out)!r} is not empty; give a new or empty directory")
    return out


def _check_resolution(resolution: object) -> int:
    resolution = _check_int(resolution, "resolution", 16)
    if resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 16, got {resolution}")
    return resolution


# ------------------------------------------------------------------ writing
def _to_uint8(values: Tensor) -> np.ndarray:
    """[B, C, H, W] in [0, 1] -> uint8 [B, H, W, C]."""
    return (values.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _write_json(path: Path, data: object) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def _settings(count: int, resolution: int, seed: int, gaussians: int, yaw_std: float, pitch_std: float) -> dict:
    return {
        "version": SYNTH_VERSION,
        "count": count,
        "resolution": resolution,
        "seed": seed,
        "gaussians_per_head": gaussians,
        "views_per_identity": 1,
        "background": "white",
        "camera": {
            "radius": DEFAULT_RADIUS,
            "focal": DEFAULT_FOCAL,
            "lookat": list(LOOKAT),
            "yaw_deg": {"distribution": "truncated normal", "mean": 0.0, "std": yaw_std, "truncation_std": TRUNCATION},
            "pitch_deg": {
                "distribution": "truncated normal",
                "mean": 0.0,
                "std": pitch_std,
                "truncation_std": TRUNCATION,
                "note": "camera elevation; look_at pitch = pi/2 * (1 - sin(elevation))",
            },
        },
    }


@dataclass(frozen=True)
class _Job:
    """What every worker needs: where to write, and the heads [count] and cameras [count, 25]."""

    out: Path
    resolution: int
    gaussians: int
    params: list[HeadParams]
    labels: Tensor
    ply_count: int


def _write_batch(job: _Job, builder: HeadBuilder, start: int, stop: int) -> None:
    """Build, render and write images start .. stop - 1 (and their PLYs, if among the first)."""
    scenes = GaussianScene.cat([builder.build(p) for p in job.params[start:stop]])
    out = render(scenes, job.labels[start:stop], job.resolution, background=1.0)
    images, masks = _to_uint8(out.image), _to_uint8(out.alpha)[..., 0]
    for j, i in enumerate(range(start, stop)):
        Image.fromarray(images[j], "RGB").save(job.out / f"{i:05d}.png")
        Image.fromarray(masks[j], "L").save(job.out / MASK_DIR / f"{i:05d}.png")
        if i < job.ply_count:
            write_ply(job.out / SCENE_DIR / f"{i:05d}.ply", scenes[j])


def _worker(job: _Job, batches: list[tuple[int, int]], messages: multiprocessing.Queue) -> None:
    """A forked worker: one thread (so results do not depend on the number of workers, and
    small ops do not spin-wait on busy cores), its own templates; reports the images done (int)
    or the traceback of a failure (str) to ``messages``."""
    torch.set_num_threads(1)
    try:
        builder = HeadBuilder(job.gaussians)
        for start, stop in batches:
            _write_batch(job, builder, start, stop)
            messages.put(stop - start)
    except BaseException:
        messages.put(traceback.format_exc())


def _run_workers(job: _Job, batches: list[tuple[int, int]], workers: int, bar: tqdm) -> None:
    """Share the batches round-robin among ``workers`` forked processes and wait for them."""
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    procs = [
        context.Process(target=_worker, args=(job, batches[w::workers], messages), daemon=True) for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        done, total = 0, sum(stop - start for start, stop in batches)
        while done < total:
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                # A worker that exits has flushed its messages first (the queue's feeder thread).
                if any(proc.exitcode not in (None, 0) for proc in procs) or not any(p.is_alive() for p in procs):
                    raise RuntimeError("a synthesis worker exited early (killed, out of memory?)") from None
                continue
            if isinstance(message, str):
                raise RuntimeError(f"a synthesis worker failed:\n{message}")
            done += message
            bar.update(message)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _run_here(job: _Job, batches: list[tuple[int, int]], bar: tqdm) -> None:
    """All batches in this process, single-threaded like the workers (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        builder = HeadBuilder(job.gaussians)
        for start, stop in batches:
            _write_batch(job, builder, start, stop)
            bar.update(stop - start)
    finally:
        torch.set_num_threads(threads)


def _write_attributes(path: Path, names: list[str], yaw: Tensor, pitch: Tensor, params: list[HeadParams]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "yaw_deg", "pitch_deg", "smile"])
        for name, y, p, head in zip(names, yaw.tolist(), pitch.tolist(), params, strict=True):
            writer.writerow([name, f"{y:.4f}", f"{p:.4f}", f"{head.smile:.4f}"])


def synthesize_dataset(
    out_dir: str | os.PathLike,
    count: int = 5000,
    resolution: int = 64,
    seed: int = 0,
    gaussians: int | None = None,
    ply_count: int = 16,
    yaw_std: float = YAW_STD,
    pitch_std: float = PITCH_STD,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Render ``count`` random heads into ``out_dir`` (new or empty) and return its path.

    One view per head identity; see the module docstring for the layout and
    the camera distribution (``yaw_std``/``pitch_std`` in degrees).
    ``gaussians`` per head defaults to :func:`default_gaussians` (4000 at 64
    px); ``ply_count`` ground-truth scenes are saved as PLY. Heads are built
    and rendered in ``workers`` forked processes (default: one per core, at
    most 2), each single-threaded, so the files do not depend on ``workers``;
    where fork is unavailable, in this process. About 22 s per thousand images
    at 64 px on two free cores. ValueError names the argument for a bad count,
    resolution (a power of two >= 16), seed, gaussians (>= 1000), ply_count,
    std, workers or an out_dir that is a file or not empty.
    """
    count = _check_int(count, "count", 1)
    resolution = _check_resolution(resolution)
    seed = _check_int(seed, "seed", 0)
    gaussians = default_gaussians(resolution) if gaussians is None else _check_int(gaussians, "gaussians", 1000)
    ply_count = min(_check_int(ply_count, "ply_count", 0), count)
    yaw_std, pitch_std = _check_std(yaw_std, "yaw_std"), _check_std(pitch_std, "pitch_std")
    workers = min(2, os.cpu_count() or 1) if workers is None else _check_int(workers, "workers", 1)
    out = _check_out_dir(out_dir)
    (out / MASK_DIR).mkdir(parents=True, exist_ok=True)
    if ply_count:
        (out / SCENE_DIR).mkdir(exist_ok=True)

    yaw, pitch = sample_poses(count, torch.Generator().manual_seed(seed), yaw_std, pitch_std)
    params = [sample_head_params(head_seed(seed, i)) for i in range(count)]
    job = _Job(out, resolution, gaussians, params, pose_labels(yaw, pitch), ply_count)
    batches = [(start, min(start + BATCH, count)) for start in range(0, count, BATCH)]
    workers = min(workers, len(batches))
    with tqdm(total=count, disable=not progress, unit="img", desc="synthesising heads") as bar:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            _run_workers(job, batches, workers, bar)
        else:
            _run_here(job, batches, bar)

    names = [f"{i:05d}.png" for i in range(count)]
    _write_attributes(out / "attributes.csv", names, yaw, pitch, params)
    _write_json(out / "synth.json", _settings(count, resolution, seed, gaussians, yaw_std, pitch_std))
    rows = [[name, [float(v) for v in label]] for name, label in zip(names, job.labels.tolist(), strict=True)]
    _write_json(out / "dataset.json", {"labels": rows})  # last: its presence marks a finished run
    return out
