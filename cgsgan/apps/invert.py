"""Photos in, a 3D Gaussian head out: ``cgsgan invert`` as a library call.

    summary = invert_files(["me.jpg"], "out/invert")                # built-in network, raw photo
    summary = invert_files(["crop.png"], "out/inv", labels=["dataset.json"], masks=["mask.png"])

writes into the output folder:

    head.ply (and the other --formats)    the head, 3DGS files for viewers and engines
    turntable.gif                         a full turn around it
    compare.png                           per view: the input, the reconstruction, and the head
                                          from -60, -30, +30 and +60 degrees of yaw from that view
    latent.npz                            ws [1, num_ws, w_dim] (regenerate with the tuned generator)
    generator.safetensors                 the tuned generator (after tuning)
    result.json                           settings, the views' labels and scores, final losses,
                                          PSNR at each input view, seconds per stage
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cgsgan.apps.files import render_views, to_uint8, write_scene, write_video
from cgsgan.apps.heads import open_network
from cgsgan.atomic import atomic_write
from cgsgan.camera import camera_positions, orbit_labels
from cgsgan.invert.optimize import Inversion, InversionConfig, invert, psnr
from cgsgan.invert.perceptual import load_perceptual
from cgsgan.invert.targets import View, aligned_view, parse_label, photo_views
from cgsgan.io.checkpoint import save_networks
from cgsgan.prepare.pose import SYNTHETIC_EYE_WIDTH
from cgsgan.render import render

__all__ = ["NOVEL_YAWS", "invert_files", "load_identity", "load_views", "view_angles", "write_inversion"]

NOVEL_YAWS = (-60.0, -30.0, 30.0, 60.0)  # degrees from each input view, in compare.png
MIN_IDENTITY_RESOLUTION = 128  # smaller faces are a blur to a face recogniser


def view_angles(label: torch.Tensor) -> tuple[float, float]:
    """(yaw, elevation) in degrees of a camera label, as :func:`cgsgan.camera.orbit_labels` takes them."""
    x, y, z = camera_positions(label[None].double())[0].tolist()
    return math.degrees(math.atan2(x, z)), math.degrees(math.asin(y / math.sqrt(x * x + y * y + z * z)))


def load_views(
    inputs: Sequence[str | os.PathLike],
    resolution: int,
    labels: Sequence[str] | None = None,
    masks: Sequence[str | os.PathLike] | None = None,
    eye_width: float | None = None,
) -> list[View]:
    """Raw photos (no ``labels``: prepared with :mod:`cgsgan.prepare`), or aligned crops with one label
    each (25 numbers, or a dataset.json) and optionally one mask each."""
    if not inputs:
        raise ValueError("give at least one photo")
    for path in inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no photo at {path}")
    if not labels:
        if masks:
            raise ValueError("masks go with aligned crops and their --label; raw photos are masked by preparation")
        return photo_views(list(inputs), resolution, eye_width)
    if len(labels) not in (1, len(inputs)) or (masks and len(masks) != len(inputs)):
        raise ValueError(f"{len(inputs)} image(s) need as many labels (or one dataset.json) and masks (or none)")
    labels = list(labels) * len(inputs) if len(labels) == 1 else list(labels)
    return [aligned_view(path, parse_label(label, path), resolution, masks[i] if masks else None, eye_width)
            for i, (path, label) in enumerate(zip(inputs, labels, strict=True))]  # fmt: skip


def _compare(result: Inversion, views: Sequence[View], resolution: int) -> np.ndarray:
    """Rows per view: the input over white, the reconstruction, then NOVEL_YAWS from that view."""
    scene, rows = result.scene(), []
    for view in views:
        yaw, elevation = view_angles(view.label)
        yaws = torch.tensor([yaw + d for d in NOVEL_YAWS], dtype=torch.float64)
        cams = torch.cat([view.label[None].double(), orbit_labels(yaws, torch.full_like(yaws, elevation))])
        with torch.no_grad():
            images = render(scene, cams.to(scene.xyz), resolution, background=1.0).image
        target = view.image * view.mask + (1 - view.mask)
        rows.append(np.concatenate([to_uint8(target), *(to_uint8(im) for im in images)], axis=1))
    return np.concatenate(rows, axis=0)


def write_inversion(result: Inversion, views: Sequence[View], out: str | os.PathLike, formats: Sequence[str] = ("ply",),
                    frames: int = 48, video: str = "turntable.gif", network: str = "",
                    extra: dict | None = None) -> dict:  # fmt: skip
    """Write the head, turntable, comparison, latent, tuned generator and result.json (with ``extra`` merged in);
    the summary dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolution = views[0].image.shape[-1]
    scene = result.scene()
    written = [write_scene(out / f"head.{fmt}", scene) for fmt in formats]
    _, elevation = view_angles(views[0].label)
    turn = torch.arange(frames, dtype=torch.float64) * (360.0 / frames)
    orbit = orbit_labels(turn, torch.full_like(turn, elevation)).to(scene.xyz)
    written.append(write_video(out / video, render_views(scene, orbit, resolution, torch.ones(3)), fps=24))
    compare = out / "compare.png"
    atomic_write(compare, lambda f: Image.fromarray(_compare(result, views, resolution)).save(f, format="PNG"))
    written.append(compare)
    latent = out / "latent.npz"
    atomic_write(latent, lambda f: np.savez(f, ws=result.ws.cpu().numpy()))
    written.append(latent)
    if result.tuned:
        source = f"inverted from {network or 'a network'}"
        written.append(save_networks(out / "generator.safetensors", {"G_ema": result.generator}, result.generator.cfg,
                                     source=source))  # fmt: skip
    with torch.no_grad():
        images = render(scene, torch.stack([v.label for v in views]).to(scene.xyz), resolution, background=1.0).image
    summary = {
        "network": network,
        "views": [
            {
                "source": v.source,
                "label": v.label.tolist(),
                "scores": v.scores,
                "psnr_db": round(psnr(im.cpu(), v.image * v.mask + (1 - v.mask)), 2),
            }
            for v, im in zip(views, images, strict=True)
        ],  # fmt: skip
        "final": {
            stage: next(h for h in reversed(result.history) if h["stage"] == stage)
            for stage in ("latent", "tuning")
            if any(h["stage"] == stage for h in result.history)
        },  # fmt: skip
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "config": result.config,
        "files": [str(p) for p in written],
        **(extra or {}),
    }
    atomic_write(out / "result.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    return summary


def invert_files(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    network: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    masks: Sequence[str | os.PathLike] | None = None,
    cfg: InversionConfig = InversionConfig(),  # noqa: B008 (frozen)
    perceptual: str = "inception",
    perceptual_weights: str | os.PathLike | None = None,
    formats: Sequence[str] = ("ply",),
    frames: int = 48,
    video: str = "turntable.gif",
    device: str | None = None,
    eye_width: float | None = None,
    progress: bool = True,
) -> dict:
    """Load the network and views, invert, write the outputs (module docstring); the summary dict."""
    G = open_network(network, device)
    if eye_width is None and network is None:
        eye_width = SYNTHETIC_EYE_WIDTH  # the built-in network learnt heads at the synthetic heads' framing
    views = load_views(inputs, G.cfg.resolution, labels, masks, eye_width)
    device = next(G.parameters()).device
    distance = load_perceptual(perceptual if cfg.perceptual_weight > 0 else "none", perceptual_weights, device)
    identity, why = load_identity(cfg, G.cfg.resolution, device)
    result = invert(G, views, cfg, distance, progress, identity)
    name = str(network or "the built-in network")
    return write_inversion(result, views, out, formats, frames, video, name, {"identity_loss": why})


def load_identity(cfg: InversionConfig, resolution: int, device) -> tuple[nn.Module | None, str]:
    """The identity network when the identity loss applies, and a line saying whether it is used and why."""
    if cfg.identity_weight == 0:
        return None, "off (weight 0)"
    if resolution < MIN_IDENTITY_RESOLUTION:
        need = MIN_IDENTITY_RESOLUTION
        return None, f"off: a {resolution}^2 face is too small for a face recogniser (needs {need}^2)"
    try:
        from cgsgan.invert.identity import FaceIdentity

        return FaceIdentity().to(device), f"on (SFace, weight {cfg.identity_weight})"
    except (ImportError, FileNotFoundError) as e:
        return None, f"off: {e}"
