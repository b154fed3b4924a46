"""Render and convert scene files (.ply, .compressed.ply, .splat, .spz): stills, turntables, conversion.

    render_file("head.ply", "head.png")                      # one frontal view
    render_file("head.ply", "turn/", frames=60)              # turntable as turn/frame_0000.png ...
    render_file("head.splat", "turn.gif", frames=60)         # ... or as a GIF (.mp4 needs imageio-ffmpeg)
    convert_file("head.ply", "head.splat")                   # format chosen by the extensions
    convert_file("head.ply", "head.spz", spz_version=3)      # .spz version 2 (default) or 3

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

from cgsgan.atomic import atomic_write
from cgsgan.camera import DEFAULT_RADIUS, FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.gaussians import GaussianScene
from cgsgan.io import (
    is_compressed_ply,
    read_compressed_ply,
    read_ply,
    read_splat,
    read_spz,
    write_compressed_ply,
    write_ply,
    write_splat,
    write_spz,
)
from cgsgan.render import render

__all__ = [
    "IMAGE_SUFFIXES",
    "SCENE_SUFFIXES",
    "VIDEO_HINT",
    "VIDEO_SUFFIXES",
    "check_video_path",
    "convert_file",
    "read_scene",
    "render_file",
    "render_views",
    "resolve_device",
    "to_uint8",
    "write_scene",
    "write_video",
]

SCENE_SUFFIXES = (".ply", ".compressed.ply", ".splat", ".spz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".gif")
VIDEO_HINT = 'writing .mp4 needs ffmpeg for imageio: pip install "cgsgan[video]" (or write a .gif)'

PathLike = str | os.PathLike


# ------------------------------------------------------------------ scenes
def _scene_suffix(path: PathLike, role: str) -> str:
    """The lower-case scene suffix of a path (".compressed.ply" counts as one); ValueError if unsupported."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return ".compressed.ply"
    suffix = Path(path).suffix.lower()
    if suffix not in SCENE_SUFFIXES:
        raise ValueError(
            f"{role} file {str(path)!r} must end in .ply or .splat (or .compressed.ply, .spz), "
            f"not {suffix or 'no extension'!r}"
        )
    return suffix


def scene_stem(path: PathLike) -> str:
    """A scene file's name without its scene suffix (head.compressed.ply -> head)."""
    name = Path(path).name
    for suffix in sorted(SCENE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(path).stem or "scene"


def _check_spz_version(spz_version: int) -> None:
    if spz_version not in (2, 3):
        raise ValueError(f"spz_version must be 2 or 3, got {spz_version!r}")


def read_scene(path: PathLike, up: str = "y") -> GaussianScene:
    """Read a .ply, .compressed.ply, .splat or .spz file (chosen by extension) into a B = 1 scene in our frame.

    A file ending in plain .ply whose header has the compressed layout (a
    ``chunk`` element and ``packed_*`` properties) is read as compressed PLY, as
    PlayCanvas tools do. ``up`` is the frame the file is stored in ("y" ours,
    "-y" y-down viewers; for .spz the frame of its PLY equivalent, see
    :mod:`cgsgan.io.spz`). Raises ValueError for another extension,
    FileNotFoundError for a missing file.
    """
    suffix = _scene_suffix(path, "scene")
    if suffix == ".compressed.ply" or (suffix == ".ply" and is_compressed_ply(path)):
        return read_compressed_ply(path, up=up)
    readers = {".ply": read_ply, ".splat": read_splat, ".spz": read_spz}
    return readers[suffix](path, up=up)


def write_scene(
    path: PathLike, scene: GaussianScene, up: str = "y", compact: bool = False, spz_version: int = 2
) -> Path:
    """Write sample 0 of ``scene`` as .ply (full, or compact 14-property), .compressed.ply, .splat or .spz.

    The format is chosen by extension. ``compact`` only applies to plain PLY;
    asking for it with another format raises ValueError. ``spz_version`` (2 or
    3) is the .spz version written (2: readable everywhere, 3: finer rotations).
    """
    suffix = _scene_suffix(path, "output")
    _check_spz_version(spz_version)
    if compact and suffix != ".ply":
        raise ValueError(f"compact applies to .ply output only ({suffix} has a single layout)")
    if suffix == ".splat":
        return write_splat(path, scene, up=up)
    if suffix == ".spz":
        return write_spz(path, scene, up=up, version=spz_version)
    if suffix == ".compressed.ply":
        return write_compressed_ply(path, scene, up=up)
    return write_ply(path, scene, compact=compact, up=up)


def convert_file(
    src: PathLike,
    dst: PathLike,
    compact: bool = False,
    up_in: str = "y",
    up_out: str = "y",
    spz_version: int = 2,
) -> Path:
    """Convert a scene file between .ply, .compressed.ply, .splat and .spz (or full <-> compact PLY).

    ``up_in`` / ``up_out`` are the frames of the input and output files, so a
    y-down file can be turned into a y-up one on the way. .splat, .spz and
    .compressed.ply are quantised, so writing one is lossy (see their modules
    for the error bounds); ``spz_version`` (2 or 3) applies to .spz output.
    Returns the written path.
    """
    suffix = _scene_suffix(dst, "output")  # fail before reading a large input
    _check_spz_version(spz_version)
    if compact and suffix != ".ply":
        raise ValueError(f"compact applies to .ply output only ({suffix} has a single layout)")
    return write_scene(dst, read_scene(src, up=up_in), up=up_out, compact=compact, spz_version=spz_version)


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


def check_video_path(path: PathLike) -> Path:
    """``path`` if it ends in .mp4 or .gif and a writer for it is installed (checked before rendering)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video {str(path)!r} must end in .mp4 or .gif")
    if suffix == ".mp4" and not importlib.util.find_spec("imageio_ffmpeg"):
        raise ImportError(VIDEO_HINT)
    return path


def write_video(path: str | os.PathLike, frames: Iterator[np.ndarray], fps: float, progress: bool = False,
                total: int | None = None) -> Path:  # fmt: skip
    """Stream uint8 frames [H, W, 3] into an .mp4 (H.264, ffmpeg) or a looping .gif, atomically."""
    path = check_video_path(path)
    suffix = path.suffix.lower()
    frames = tqdm(frames, desc="rendering", unit="frame", total=total, disable=not progress)

    def write(f) -> None:
        if suffix == ".gif":  # Pillow needs every frame at once; GIFs are small
            iio.imwrite(f, np.stack(list(frames)), extension=".gif", duration=1000.0 / fps, loop=0)
            return
        import imageio_ffmpeg

        writer = None
        try:
            for frame in frames:
                # yuv420p (the format every player takes) needs even sizes: repeat the last row / column.
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
                if writer is None:  # the size is known with the first frame
                    # ffmpeg writes the temp file itself; "-f mp4" because its name ends in .tmp.
                    writer = imageio_ffmpeg.write_frames(
                        f.name, (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                        quality=8, macro_block_size=1, output_params=["-f", "mp4"], ffmpeg_log_level="error",
                    )  # fmt: skip
                    writer.send(None)
                writer.send(np.ascontiguousarray(frame))
        finally:  # also after a failed render or Ctrl+C: ffmpeg must not outlive the temp file
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError("no frames to write")

    return atomic_write(path, write)


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
    """Render a scene file (.ply, .compressed.ply, .splat, .spz) to images; returns the paths written.

    frames == 1: one image at yaw/pitch (radians, offsets from the frontal
    view) written to ``out`` (an image path, or a folder that gets
    ``<name>.png``). frames > 1: a turntable starting there, written to the
    folder ``out`` as frame_0000.png, ... or, if ``out`` ends in .gif/.mp4, as
    one video at ``fps`` (an .mp4 needs the video extra: imageio-ffmpeg). A tqdm bar
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
        check_video_path(out)
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
        write_video(out, images, fps)  # render_views shows the progress
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    name: Callable[[int], str] = (lambda i: f"{path.stem}.png") if frames == 1 else (lambda i: f"frame_{i:04d}.png")
    written = []
    for i, image in enumerate(images):
        iio.imwrite(out / name(i), image)
        written.append(out / name(i))
    return written
