"""The demo: build the procedural head, render a strip of views, export it.

    paths = run_demo("out/demo")
    paths["grid"]   # demo_grid.png: views side by side, yaw pi/2 - 0.6 ... pi/2 + 0.6
    paths["ply"]    # demo_head.ply: standard 3DGS PLY (loads in 3DGS viewers)
    paths["splat"]  # demo_head.splat: for antimatter15's WebGL viewer

Needs no checkpoint and no download; see :func:`cgsgan.synthetic.demo_head`.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from cgsgan.apps.files import render_views, resolve_device
from cgsgan.camera import FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.io import write_ply, write_splat
from cgsgan.io.frames import check_up
from cgsgan.synthetic import demo_head

__all__ = ["DEMO_YAW_RANGE", "demo_yaws", "run_demo"]

DEMO_YAW_RANGE = 0.6  # radians either side of frontal


def demo_yaws(views: int) -> torch.Tensor:
    """Yaws [views] evenly spread over [pi/2 - 0.6, pi/2 + 0.6]; frontal for a single view."""
    if views == 1:
        return torch.tensor([FRONTAL_YAW], dtype=torch.float64)
    return torch.linspace(FRONTAL_YAW - DEMO_YAW_RANGE, FRONTAL_YAW + DEMO_YAW_RANGE, views, dtype=torch.float64)


def run_demo(
    out_dir: str | os.PathLike,
    resolution: int = 256,
    views: int = 5,
    seed: int = 0,
    up: str = "y",
    backend: str = "auto",
    device: str | torch.device | None = None,
) -> dict[str, Path]:
    """Build the demo head, render ``views`` views over white and export the scene.

    Writes into ``out_dir`` (created if needed):
      - demo_grid.png: the views side by side, uint8 RGB [resolution, views * resolution];
      - demo_head.ply: the scene as a standard 3DGS PLY, stored in frame ``up``;
      - demo_head.splat: the same as a .splat file, in frame ``up``.
    Returns {"grid": ..., "ply": ..., "splat": ...}. Prints nothing.
    ``device`` is where to render (default CPU); ``seed`` picks the head.
    """
    for name, value in (("resolution", resolution), ("views", views)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    check_up(up)
    device = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    scene = demo_head(seed=seed)
    labels = look_at(demo_yaws(views), FRONTAL_PITCH, device=device)
    white = torch.ones(3)
    strip = np.concatenate(list(render_views(scene.to(device), labels, resolution, white, backend)), axis=1)

    paths = {
        "grid": out_dir / "demo_grid.png",
        "ply": out_dir / "demo_head.ply",
        "splat": out_dir / "demo_head.splat",
    }
    iio.imwrite(paths["grid"], strip)
    write_ply(paths["ply"], scene, up=up)
    write_splat(paths["splat"], scene, up=up)
    return paths
