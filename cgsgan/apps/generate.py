"""``cgsgan generate``: a grid of heads from several yaws, and each head as files.

    paths = generate_files(None, [0, 1, 2], "out/generate")          # the built-in network
    paths["grid"]      # [grid.png]: one row per seed (the first 16), the reference's 7 yaws as columns
    paths["ply"]       # [seed0000.ply, ...]: standard 3DGS PLY (Unity, SuperSplat, web viewers)
    paths["spz"]       # [seed0000.spz, ...]: compressed, version 2 (Unity reads only v2)
    paths["npz"]       # [seed0000.npz, ...]: z [1, 512], w [1, num_ws, 512], seed, truncation_psi
    paths["turntable"] # [turntable.gif]: every head side by side, one full orbit (48 frames, 2 s)

The grid follows the reference's sample script: columns at yaw = pi * a for
a = 0.8, 0.7, ..., 0.2 (0.5 is frontal; it writes 3.14 for pi), pitch pi / 2,
radius 2.7, white background. Each latent is mapped once (see
:mod:`cgsgan.apps.heads`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from cgsgan.apps.files import render_views, resolve_device, write_scene
from cgsgan.apps.heads import Heads, Synthesizer, check_truncation, generate, open_network, parse_seeds
from cgsgan.apps.video import camera_path, video_frames, write_video
from cgsgan.atomic import atomic_write
from cgsgan.camera import DEFAULT_RADIUS, FRONTAL_PITCH, look_at
from cgsgan.io.frames import check_up
from cgsgan.models import CGSGenerator

__all__ = ["FORMATS", "GRID_YAWS", "generate_files", "grid_image", "scene_path"]

GRID_YAWS = tuple(math.pi * a for a in (0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2))  # the reference's columns
FORMATS = ("grid", "turntable", "ply", "splat", "spz", "compressed-ply", "npz")  # what --formats may name
DEFAULT_FORMATS = ("grid", "turntable", "ply", "splat", "spz", "npz")
TURNTABLE_FRAMES, TURNTABLE_SECONDS = 48, 2.0
PICTURE_SEEDS = 16  # the grid and the turntable show the first 16 seeds; files are written for all
BATCH = 8  # heads generated at once for the files
SCENE_SUFFIXES = {"ply": ".ply", "splat": ".splat", "spz": ".spz", "compressed-ply": ".compressed.ply"}


def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Formats from "ply,spz" or a list; ValueError naming an unknown one."""
    items = [f.strip().lower() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    unknown = [f for f in items if f not in FORMATS]
    if unknown or not items:
        raise ValueError(f"unknown format {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def scene_path(out_dir: Path, seed: int, fmt: str) -> Path:
    """Where head ``seed`` goes in format ``fmt``: seed0042.ply, seed0042.compressed.ply, ..."""
    return out_dir / f"seed{seed:04d}{SCENE_SUFFIXES.get(fmt, '.' + fmt)}"


def grid_image(
    heads: Heads,
    resolution: int,
    yaws: Sequence[float] = GRID_YAWS,
    pitch: float = FRONTAL_PITCH,
    radius: float = DEFAULT_RADIUS,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    backend: str = "auto",
    progress: Callable | None = None,
) -> np.ndarray:
    """uint8 [B * resolution, len(yaws) * resolution, 3]: head b in row b, one column per yaw (radians)."""
    scene = heads.scene
    labels = look_at(torch.tensor(yaws, dtype=torch.float64), pitch, radius, device=scene.device)
    colour = torch.tensor(background, dtype=torch.float32)
    rows = range(scene.batch_size) if progress is None else progress(range(scene.batch_size))
    strips = [np.concatenate(list(render_views(scene[b], labels, resolution, colour, backend)), axis=1) for b in rows]
    return np.concatenate(strips, axis=0)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def generate_files(
    network: str | os.PathLike | CGSGenerator | None,
    seeds: str | Sequence[int],
    out_dir: str | os.PathLike,
    truncation: float = 0.8,
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    resolution: int | None = None,
    up: str = "y",
    spz_version: int = 2,
    precision: str = "float32",
    compile: bool = False,
    backend: str = "auto",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, list[Path]]:
    """Generate the heads of ``seeds`` and write the files ``formats`` asks for into ``out_dir``.

    network: a cgsgan .safetensors, an official .pkl, a loaded generator, or
    None for the built-in network. resolution: grid cell size (default: the
    network's). ``up`` is the frame of the scene files ("-y" for y-down viewers).
    ``precision`` and ``compile`` choose the network's path (:class:`cgsgan.apps.heads.Synthesizer`).
    Returns {format: [paths]} in seed order. The grid and the turntable show
    the first 16 seeds; the files are written for every seed, 8 heads at a
    time. Arguments are checked before the network runs, and each file is
    written whole or not at all.
    """
    seeds = parse_seeds(seeds)
    formats = check_formats(formats)
    truncation = check_truncation(truncation)
    check_up(up)
    if spz_version not in (2, 3):
        raise ValueError(f"spz_version must be 2 or 3, got {spz_version!r}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8):
        raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")
    device = resolve_device(device)
    G = network if isinstance(network, CGSGenerator) else open_network(network, device)
    G = G.to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolution = resolution or G.cfg.resolution
    synthesizer = Synthesizer(G, precision, compile)

    paths: dict[str, list[Path]] = {f: [] for f in formats}
    shown = seeds[:PICTURE_SEEDS]
    if "grid" in formats or "turntable" in formats:
        heads = generate(G, shown, truncation, batch=BATCH, precision=precision, synthesizer=synthesizer)
        if "grid" in formats:
            bar = (lambda xs: tqdm(xs, desc="grid", unit="head")) if progress else None
            grid = grid_image(heads, resolution, backend=backend, progress=bar)
            paths["grid"].append(atomic_write(out_dir / "grid.png", lambda f: iio.imwrite(f, grid, extension=".png")))
        if "turntable" in formats:
            labels = camera_path("orbit", TURNTABLE_FRAMES, device=device)
            frames = video_frames(lambda t: heads.scene, labels, resolution, torch.ones(3, device=device), backend)
            path = write_video(out_dir / "turntable.gif", frames, TURNTABLE_FRAMES / TURNTABLE_SECONDS,
                               progress=progress, total=TURNTABLE_FRAMES)  # fmt: skip
            paths["turntable"].append(path)
        del heads
    files = [f for f in formats if f not in ("grid", "turntable")]
    bar = tqdm(total=len(seeds), desc="writing", unit="head", disable=not (progress and files))
    for start in range(0, len(seeds) if files else 0, BATCH):  # a batch at a time: memory stays bounded
        chunk = seeds[start : start + BATCH]
        heads = generate(G, chunk, truncation, batch=BATCH, precision=precision, synthesizer=synthesizer)
        for i, seed in enumerate(chunk):
            for fmt in files:
                path = scene_path(out_dir, seed, fmt)
                if fmt == "npz":
                    _write_npz(path, heads.latent_arrays(i))
                else:
                    extra = {"spz_version": spz_version} if fmt == "spz" else {}
                    write_scene(path, heads.scene[i], up=up, **extra)
                paths[fmt].append(path)
            bar.update()
    bar.close()
    return paths
