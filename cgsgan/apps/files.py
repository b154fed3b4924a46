"""Render and convert scene files (.ply / .splat): stills, turntables, format conversion.

    render_file("head.ply", "head.png")                      # one frontal view
    render_file("head.ply", "turn/", frames=60)              # turntable as turn/frame_0000.png ...
    render_file("head.splat", "turn.gif", frames=60)         # ... or as a GIF (.mp4 needs imageio-ffmpeg)
    convert_file("head.ply", "head.splat")                   # format chosen by the extensions

Angles are radians relative to the frontal camera and follow ``cgsgan.camera``:
a positive yaw moves the camera toward +x (the subject's left), a positive
pitch moves it *down* (EG3D's convention: smaller pitch is higher).
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from cgsgan.camera import DEFAULT_RADIUS, FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.gaussians import GaussianScene
from cgsgan.io import read_ply, read_splat, write_ply, write_splat
from cgsgan.render import render

__all__ = [
    "IMAGE_SUFFIXES",
    "SCENE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "convert_file",
    "read_scene",
    "render_file",
    "render_views",
    "resolve_device",
    "to_uint8",
    "write_scene",
]

SCENE_SUFFIXES = (".ply", ".splat")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".gif")
MP4_HINT = "writing .mp4 needs an ffmpeg backend for imageio: pip install imageio-ffmpeg (or: pip install av)"

PathLike = str | os.PathLike


# ------------------------------------------------------------------ scenes
def _scene_suffix(path: PathLike, role: str) -> str:
    """The lower-case suffix of a scene file; ValueError naming the file if unsupported."""
    suffix = Path(path).suffix.lower()
    if suffix not in SCENE_SUFFIXES:
        raise ValueError(f"{role} file {str(path)!r} must end in .ply or .splat, not {suffix or 'no extension'!r}")
    return suffix


def read_scene(path: PathLike, up: str = "y") -> GaussianScene:
    """Read a .ply or .splat file (chosen by extension) into a B = 1 scene in our frame.

    ``up`` is the frame the file is stored in ("y" ours, "-y" y-down viewers).
    Raises ValueError for another extension, FileNotFoundError for a missing file.
    """
    suffix = _scene_suffix(path, "scene")
    return read_ply(path, up=up) if suffix == ".ply" else read_splat(path, up=up)


def write_scene(path: PathLike, scene: GaussianScene, up: str = "y", compact: bool = False) -> Path:
    """Write sample 0 of ``scene`` as .ply (full, or compact 14-property) or .splat, by extension.

    ``compact`` only applies to PLY; asking for it with .splat raises ValueError.
    """
    suffix = _scene_suffix(path, "output")
    if suffix == ".splat":
        if compact:
            raise ValueError("compact applies to .ply output only (.splat has a single layout)")
        return write_splat(path, scene, up=up)
    return write_ply(path, scene, compact=compact, up=up)


def convert_file(src: PathLike, dst: PathLike, compact: bool = False, up_in: str = "y", up_out: str = "y") -> Path:
    """Convert a scene file between .ply and .splat (or full <-> compact PLY).

    ``up_in`` / ``up_out`` are the frames of the input and output files, so a
    y-down file can be turned into a y-up one on the way. .splat stores 8-bit
    colours, opacities and rotations, so converting from it is lossy once.
    Returns the written path.
    """
    _scene_suffix(dst, "output")  # fail before reading a large input
    if compact and Path(dst).suffix.lower() != ".ply":
        raise ValueError("compact applies to .ply output only (.splat has a single layout)")
    return write_scene(dst, read_scene(src, up=up_in), up=up_out, compact=compact)


# ------------------------------------------------------------------ images
def to_uint8(image: Tensor) -> np.ndarray:
    """An image [3, H, W] (or a batch [B, 3, H, W]) in [0, 1] as uint8 [H, W, 3] ([B, H, W, 3])."""
    image = image.detach().clamp(0, 1).mul(255).round().to("cpu", torch.uint8)
    return image.movedim(-3, -1).numpy()


def _background(background: float | Sequence[float]) -> Tensor:
    """A background colour as a [3] float tensor in [0, 1]."""
    if isinstance(background, numbers.Real) and not isinstance(background, bool):
        background = (float(background),) * 3
    try:
        colour = torch.tensor([float(c) for c in background], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ValueError(f"background must be a number or 3 numbers in [0, 1], got {background!r}") from None
    if colour.shape != (3,) or not torch.isfinite(colour).all() or (colour < 0).any() or (colour > 1).any():
        raise ValueError(f"background must be a number or 3 numbers in [0, 1], got {background!r}")
    return colour


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device (CPU when None); ValueError if it is malformed or absent."""
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as cpu, cuda or cuda:1, got {device!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} asked for, but only {torch.cuda.device_count()} CUDA devices exist"
            )
    return device


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_writer(suffix: str) -> None:
    """Fail early (before rendering) if no writer for ``suffix`` is installed."""
    if suffix == ".mp4" and not (importlib.util.find_spec("imageio_ffmpeg") or importlib.util.find_spec("av")):
        raise ImportError(MP4_HINT)


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write uint8 frames [H, W, 3] as a looping GIF (Pillow) or an H.264 .mp4 (ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return
    _check_writer(".mp4")
    if importlib.util.find_spec("imageio_ffmpeg"):
        import imageio.v2 as iio2

        # macro_block_size=1: keep odd sizes as they are instead of resizing with a warning.
        with iio2.get_writer(path, format="FFMPEG", fps=fps, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame)
        return
    with iio.imopen(path, "w", plugin="pyav") as writer:
        writer.init_video_stream("libx264", fps=fps)
        for frame in frames:
            writer.write_frame(frame)


# -------------------------------------------------------------- rendering
def _orbit(frames: int, yaw: float, pitch: float, radius: float, device: torch.device) -> Tensor:
    """Camera labels [T, 25]: a full turn in T steps starting at the given yaw/pitch offsets
    from frontal (T = 1: just that view)."""
    turn = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    return look_at(FRONTAL_YAW + yaw + turn, FRONTAL_PITCH + pitch, radius, device=device)


def render_views(
    scene: GaussianScene,
    labels: Tensor,
    resolution: int,
    background: Tensor,
    backend: str = "auto",
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Render one view at a time (bounded memory) and yield uint8 images [H, W, 3].

    scene: B = 1 scene; labels [T, 25]; background [3] in [0, 1].
    """
    background = background.to(device=scene.device, dtype=scene.dtype)
    views = tqdm(range(labels.shape[0]), desc="rendering", unit="frame", disable=not progress)
    for i in views:
        with torch.no_grad():
            out = render(scene, labels[i : i + 1], resolution, background=background, backend=backend)
        yield to_uint8(out.image[0])


def _output_kind(out: Path, frames: int) -> str:
    """'image', 'video' or 'folder' for ``out``; ValueError if it does not fit ``frames``."""
    suffix = out.suffix.lower()
    if frames == 1:
        if suffix in IMAGE_SUFFIXES:
            return "image"
        if suffix == "" or out.is_dir():
            return "folder"
        raise ValueError(f"output {str(out)!r}: a single frame is written as an image ({', '.join(IMAGE_SUFFIXES)})")
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix == "" or out.is_dir():
        return "folder"
    raise ValueError(
        f"output {str(out)!r}: {frames} frames are written to a folder (no extension) or a video (.mp4, .gif)"
    )


def render_file(
    path: PathLike,
    out: PathLike,
    resolution: int = 512,
    yaw: float = 0.0,
    pitch: float = 0.0,
    frames: int = 1,
    radius: float = DEFAULT_RADIUS,
    background: float | Sequence[float] = (1.0, 1.0, 1.0),
    up: str = "y",
    backend: str = "auto",
    device: str | torch.device | None = None,
    fps: float = 30.0,
    progress: bool = True,
) -> list[Path]:
    """Render a .ply or .splat file to images; returns the paths written.

    frames == 1: one image at yaw/pitch (radians, offsets from the frontal
    view) written to ``out`` (an image path, or a folder that gets
    ``<name>.png``). frames > 1: a turntable starting there, written to the
    folder ``out`` as frame_0000.png, ... or, if ``out`` ends in .gif/.mp4, as
    one video at ``fps`` (an .mp4 needs imageio-ffmpeg or av). A tqdm bar
    shows progress unless ``progress`` is False.

    radius is the camera distance (2.7 frames a head), background a number or
    3 numbers in [0, 1], ``up`` the frame the file is stored in, ``device``
    where to render (default CPU).
    Raises ValueError for a bad extension or argument, FileNotFoundError for a
    missing input and ImportError when no .mp4 writer is installed.
    """
    path, out = Path(path), Path(out)
    _scene_suffix(path, "input")
    resolution = _check_positive_int(resolution, "resolution")
    frames = _check_positive_int(frames, "frames")
    colour = _background(background)
    kind = _output_kind(out, frames)
    if kind == "video":
        _check_writer(out.suffix.lower())
    if not (isinstance(fps, numbers.Real) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")

    device = resolve_device(device)
    scene = read_scene(path, up=up).to(device)
    labels = _orbit(frames, float(yaw), float(pitch), radius, device)
    images = render_views(scene, labels, resolution, colour, backend, progress=progress and frames > 1)

    if kind == "image":
        out.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(out, next(images))
        return [out]
    if kind == "video":
        _write_video(out, list(images), fps)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    name: Callable[[int], str] = (lambda i: f"{path.stem}.png") if frames == 1 else (lambda i: f"frame_{i:04d}.png")
    written = []
    for i, image in enumerate(images):
        iio.imwrite(out / name(i), image)
        written.append(out / name(i))
    return written
