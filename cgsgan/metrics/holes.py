"""Holes: see-through pixels inside a head's silhouette, the artefact random backgrounds remove (paper, Sec. 3).

A generator trained on images over one background colour can leave parts of
the head transparent and let the background show through them; with white
reals this costs nothing from the front. Seen from the side, such holes are
pixels whose coverage (alpha) is low although they lie inside the head's
outline. The outline is the silhouette with its interior filled: every pixel
not reachable from the image border through low-alpha pixels.

    fraction = side_view_holes(G, count=64)      # {yaw_deg: mean share of the silhouette that is a hole}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from cgsgan.camera import orbit_labels
from cgsgan.models import CGSGenerator
from cgsgan.render import render

__all__ = ["SIDE_YAWS", "count_holes", "side_view_holes"]

SIDE_YAWS = (-90.0, -60.0, 60.0, 90.0)


def count_holes(alpha: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Hole pixels [B] and filled-silhouette pixels [B] of coverage maps alpha [B, 1, H, W].

    Outside = pixels with alpha below ``threshold`` that the border reaches through such pixels (8-connected,
    by repeated 3x3 dilation); the silhouette is the rest, and a hole is a pixel of it below the threshold."""
    if alpha.dim() != 4 or alpha.shape[1] != 1:
        raise ValueError(f"alpha must be [B, 1, H, W], got {list(alpha.shape)}")
    free = alpha < threshold
    border = torch.zeros_like(free)
    border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = border[..., :, -1] = True
    outside = free & border
    while True:
        grown = F.max_pool2d(outside.float(), 3, stride=1, padding=1).bool() & free
        if torch.equal(grown, outside):
            break
        outside = grown
    silhouette = ~outside
    return (silhouette & free).sum((1, 2, 3)), silhouette.sum((1, 2, 3))


@torch.no_grad()
def side_view_holes(
    G: CGSGenerator,
    count: int = 64,
    yaws_deg: Sequence[float] = SIDE_YAWS,
    resolution: int | None = None,
    truncation: float = 1.0,
    seed: int = 0,
    batch: int = 16,
) -> dict[float, float]:
    """Mean hole share of the silhouette, per yaw (degrees from frontal, camera level), over ``count`` heads."""
    device = next(G.parameters()).device
    resolution = resolution or G.cfg.resolution
    z = torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    yaws = torch.tensor(list(yaws_deg), dtype=torch.float64)
    cams = orbit_labels(yaws, torch.zeros_like(yaws)).to(device)
    holes = torch.zeros(len(yaws), dtype=torch.float64)
    for chunk in z.split(batch):
        scenes, _ = G(chunk, truncation_psi=truncation)
        for i in range(len(yaws)):
            alpha = render(scenes, cams[i : i + 1].expand(len(chunk), -1), resolution).alpha
            hole, area = count_holes(alpha)
            holes[i] += (hole.double() / area.clamp_min(1).double()).sum().cpu()
    return {float(y): float(h / count) for y, h in zip(yaws, holes, strict=True)}
