"""Differentiable rendering of Gaussian scenes; the one place that decides the backend.

    out = render(scene, labels, resolution=256, background=1.0)
    out.image  # [B, 3, H, W] in [0, 1] over the background
    out.alpha  # [B, 1, H, W]
    out.depth  # [B, 1, H, W] sum z_i alpha_i T_i (not divided by alpha)

Semantics are those of the INRIA 3DGS rasterizer that the reference code
used (see `projection.py` and `tiles.py`); backends differ only in how they
composite the same tile lists:

- "torch": pure PyTorch, any device, float32 or float64, memory-bounded;
- "gsplat": gsplat's CUDA kernel (float32 on CUDA, `pip install cgsgan[cuda]`);
- "auto": gsplat for float32 CUDA scenes when it is installed, else torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cgsgan.camera import check_labels
from cgsgan.gaussians import GaussianScene
from cgsgan.render import gsplat_backend, torch_backend
from cgsgan.render.projection import Projection, project
from cgsgan.render.tiles import TileLists, intersect_tiles

BACKENDS = ("auto", "torch", "gsplat")
__all__ = ["BACKENDS", "Projection", "RenderOutput", "TileLists", "intersect_tiles", "project", "render"]


@dataclass
class RenderOutput:
    image: Tensor  # [B, 3, H, W]
    alpha: Tensor  # [B, 1, H, W]
    depth: Tensor  # [B, 1, H, W]


def _check_resolution(resolution: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair of positive ints."""
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        resolution = (resolution, resolution)
    if (
        not isinstance(resolution, (tuple, list))
        or len(resolution) != 2
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in resolution)
    ):
        raise ValueError(f"resolution must be an int or (height, width) ints, got {resolution!r}")
    height, width = resolution
    if height < 1 or width < 1:
        raise ValueError(f"resolution must be positive, got {height} x {width}")
    return height, width


def _check_scene(scene: GaussianScene) -> None:
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"scene must be a GaussianScene, got {type(scene).__name__}")
    if scene.num_gaussians == 0:
        raise ValueError("scene has no Gaussians (N = 0): nothing to render")
    if scene.batch_size == 0:
        raise ValueError("scene has an empty batch (B = 0)")
    for name, value in scene.tensors().items():
        if not torch.isfinite(value).all():
            raise ValueError(f"scene.{name} contains non-finite values (nan or inf)")


def _check_background(background, batch: int, like: Tensor) -> Tensor:
    """[B, 3] background colours from None (black), a number, [3] or [B, 3]."""
    if background is None:
        return like.new_zeros(batch, 3)
    if isinstance(background, (int, float)) and not isinstance(background, bool):
        background = torch.full((3,), float(background))
    if not isinstance(background, Tensor):
        background = torch.as_tensor(background)
    background = background.to(like)
    if background.shape == (3,):
        background = background.expand(batch, 3)
    if background.shape != (batch, 3):
        raise ValueError(f"background must be a number, [3] or [{batch}, 3], got {list(background.shape)}")
    if not torch.isfinite(background).all():
        raise ValueError("background contains non-finite values")
    return background


def _pick_backend(backend: str, scene: GaussianScene) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    cuda_float = scene.device.type == "cuda" and scene.dtype == torch.float32
    if backend == "auto":
        return "gsplat" if cuda_float and gsplat_backend.available() else "torch"
    if backend == "gsplat":
        if not cuda_float:
            raise ValueError(f"backend 'gsplat' needs a float32 scene on CUDA, got {scene.dtype} on {scene.device}")
        if not gsplat_backend.available():
            raise ImportError("backend 'gsplat' needs gsplat: pip install 'cgsgan[cuda]'")
    return backend


def _broadcast(scene: GaussianScene, labels: Tensor) -> tuple[GaussianScene, Tensor]:
    """One scene from many cameras, or many scenes from one camera; otherwise sizes must match."""
    b_scene, b_labels = scene.batch_size, labels.shape[0]
    if b_scene == b_labels:
        return scene, labels
    if b_scene == 1:
        return scene.map(lambda t: t.expand(b_labels, *t.shape[1:])), labels
    if b_labels == 1:
        return scene, labels.expand(b_scene, -1)
    raise ValueError(f"labels has {b_labels} cameras but scene has {b_scene} samples (need equal, or one of them 1)")


def render(
    scene: GaussianScene,
    labels: Tensor,
    resolution: int | tuple[int, int],
    background: float | Tensor | None = None,
    backend: str = "auto",
) -> RenderOutput:
    """Render scene b from camera label b (labels [B, 25], EG3D convention).

    background: None (black, i.e. premultiplied colours), a number, [3] or [B, 3] in [0, 1].
    A single scene with B cameras, or B scenes with one camera, is broadcast. Float64 scenes render
    in float64 (torch backend); float16 and bfloat16 scenes render in float32.
    """
    height, width = _check_resolution(resolution)
    _check_scene(scene)
    if scene.dtype not in (torch.float32, torch.float64):
        scene = scene.to(torch.float32)  # half-precision scenes render in float32 (outputs too)
    labels = check_labels(labels, "labels").to(device=scene.device, dtype=scene.dtype)
    scene, labels = _broadcast(scene, labels)
    batch = scene.batch_size
    background = _check_background(background, batch, scene.xyz)
    backend = _pick_backend(backend, scene)

    proj = project(scene, labels, height, width)
    # gsplat composites whole 16x16 tiles; the torch backend works on 8x8 cells of them.
    lists = intersect_tiles(proj, height, width, cell=16 if backend == "gsplat" else 8)
    if backend == "gsplat":
        image, alpha, depth = gsplat_backend.composite(proj, lists, background, height, width)
        return RenderOutput(image, alpha, depth)

    acc, trans = torch_backend.composite(torch_backend.gaussian_table(proj), lists, batch, height, width)
    image = acc[:, :3] + trans * background[:, :, None, None]
    return RenderOutput(image=image, alpha=1.0 - trans, depth=acc[:, 3:4])
