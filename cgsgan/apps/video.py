"""``cgsgan video``: turntables and latent interpolations of generated heads.

    make_video(None, [0, 1, 2], "heads.mp4")                      # three heads side by side, a full orbit
    make_video(None, [0, 1, 2], "morph.mp4", interp=True)         # one head morphing 0 -> 1 -> 2 -> 0
    make_video(None, [5], "sweep.mp4", path="sweep", frames=90, seconds=3)

Cameras follow :mod:`cgsgan.camera` (radians, offsets from the frontal view;
positive yaw toward the subject's left, positive pitch moves the camera down):

- ``orbit``: yaw = yaw0 + 2 pi t / T at a fixed pitch, a full turn around the head;
- ``sweep``: EG3D's video path, yaw = yaw_range sin(2 pi t / T),
  pitch = pitch + pitch_range cos(2 pi t / T), staying in front of the face.

Interpolation maps each seed once and blends their ws linearly with an eased
weight, seed to seed and back to the first, so the video loops.
MP4 goes through imageio's ffmpeg plugin (``pip install "cgsgan[video]"``,
which ships the ffmpeg binary); GIF needs nothing extra.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cgsgan.apps.files import check_video_path, resolve_device, to_uint8, write_video
from cgsgan.apps.heads import Synthesizer, check_truncation, generate, open_network, parse_seeds
from cgsgan.camera import DEFAULT_RADIUS, FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.gaussians import GaussianScene
from cgsgan.models import CGSGenerator
from cgsgan.render import render

__all__ = ["PATHS", "PITCH_RANGE", "YAW_RANGE", "camera_path", "interpolated_ws", "make_video", "video_frames"]

PATHS = ("orbit", "sweep")
YAW_RANGE, PITCH_RANGE = 0.35, 0.15  # radians: EG3D's video sweep


def camera_path(
    path: str,
    frames: int,
    yaw: float = 0.0,
    pitch: float = 0.0,
    radius: float = DEFAULT_RADIUS,
    yaw_range: float = YAW_RANGE,
    pitch_range: float = PITCH_RANGE,
    device: torch.device | str | None = None,
) -> Tensor:
    """Camera labels [frames, 25] of an ``orbit`` or a ``sweep`` (angles in radians, see the module)."""
    if path not in PATHS:
        raise ValueError(f"camera path must be one of {', '.join(PATHS)}, got {path!r}")
    phase = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    if path == "orbit":
        yaws, pitches = FRONTAL_YAW + yaw + phase, torch.full_like(phase, FRONTAL_PITCH + pitch)
    else:
        yaws = FRONTAL_YAW + yaw + yaw_range * torch.sin(phase)
        pitches = FRONTAL_PITCH + pitch + pitch_range * torch.cos(phase)
    return look_at(yaws, pitches, radius, device=device)


def interpolated_ws(ws: Tensor, frames: int) -> Tensor:
    """ws [K, num_ws, w_dim] -> [frames, num_ws, w_dim]: K equal legs k -> k + 1 (the last back to 0),
    each eased with (1 - cos(pi f)) / 2 so the motion stops at every seed."""
    k = ws.shape[0]
    position = torch.arange(frames, dtype=torch.float64) * (k / frames)
    start = position.floor().long()
    f = (1 - torch.cos(math.pi * (position - start))) / 2
    f = f.to(ws.dtype).to(ws.device)[:, None, None]
    return ws[start] * (1 - f) + ws[(start + 1) % k] * f


def video_frames(scene_at: Callable[[int], GaussianScene], labels: Tensor, resolution: int, background: Tensor,
            backend: str) -> Iterator[np.ndarray]:  # fmt: skip
    """Frame t: the heads of ``scene_at(t)`` side by side, all from camera t."""
    for t in range(labels.shape[0]):
        with torch.no_grad():
            scene = scene_at(t)
            image = render(scene, labels[t : t + 1].expand(scene.batch_size, -1), resolution,
                           background=background, backend=backend).image  # fmt: skip
        yield np.concatenate(list(to_uint8(image)), axis=1)


def make_video(
    network: str | os.PathLike | CGSGenerator | None,
    seeds: str | Sequence[int],
    out: str | os.PathLike,
    truncation: float = 0.8,
    path: str = "orbit",
    frames: int = 120,
    seconds: float = 4.0,
    resolution: int = 256,
    yaw: float = 0.0,
    pitch: float = 0.0,
    radius: float = DEFAULT_RADIUS,
    yaw_range: float = YAW_RANGE,
    pitch_range: float = PITCH_RANGE,
    interp: bool = False,
    precision: str = "float32",
    compile: bool = False,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    backend: str = "auto",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Path:
    """Render a video of ``seeds`` to ``out`` (.mp4 or .gif) and return its path.

    Without ``interp`` the heads stand side by side (width = len(seeds) x
    resolution); with it, one head morphs through the seeds in order (at
    least two). ``frames`` frames play in ``seconds`` seconds. Arguments are
    checked (and the MP4 writer looked for) before the network runs.
    """
    seeds = parse_seeds(seeds)
    truncation = check_truncation(truncation)
    out = check_video_path(out)
    for name, value, low in (("frames", frames, 1), ("resolution", resolution, 8)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if interp and len(seeds) < 2:
        raise ValueError("interpolation needs at least two seeds, e.g. 0,1,2")
    device = resolve_device(device)
    labels = camera_path(path, frames, yaw, pitch, radius, yaw_range, pitch_range, device=device)
    G = network if isinstance(network, CGSGenerator) else open_network(network, device)
    G = G.to(device)

    synthesizer = Synthesizer(G, precision, compile, batch=1 if interp else len(seeds))  # interp: a head a frame
    heads = generate(G, seeds, truncation, batch=len(seeds), synthesizer=synthesizer)
    if interp:
        ws = interpolated_ws(heads.ws, frames)

        def scene_at(t: int) -> GaussianScene:
            return synthesizer(ws[t : t + 1])
    else:

        def scene_at(t: int) -> GaussianScene:
            return heads.scene

    colour = torch.tensor(background, dtype=torch.float32, device=device)
    images = video_frames(scene_at, labels, resolution, colour, backend)
    return write_video(out, images, fps=frames / seconds, progress=progress, total=frames)
