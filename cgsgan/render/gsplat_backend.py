"""Compositing with gsplat's CUDA rasterizer, fed our projection and tile lists.

gsplat's own pipeline differs from the INRIA rasterizer in three places: it
picks tiles with an opacity-aware 3.33-sigma box instead of `getRect`, clamps
alpha at 0.999 instead of 0.99, and samples pixel centres at i + 0.5. We keep
our projection and tile lists (so the same pixels evaluate the same
Gaussians as in INRIA and in the torch backend), shift the means by half a
pixel, and cap opacities at 0.99 so the 0.999 clamp never binds: alpha =
min(0.999, min(o, 0.99) * G) equals min(0.99, o * G) whenever o <= 0.99. The
cap is straight-through (the gradient of o passes unchanged), so opacities
above 0.99 keep learning; for them alpha differs by at most 1 %.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cgsgan.render.projection import Projection
from cgsgan.render.tiles import TILE, TileLists

OPACITY_CAP = 0.99


def available() -> bool:
    """True when gsplat imports and CUDA is usable."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def composite(proj: Projection, lists: TileLists, background: Tensor, height: int, width: int):
    """(image [B, 3, H, W] over background, alpha [B, 1, H, W], depth [B, 1, H, W])."""
    from gsplat import rasterize_to_pixels

    batch = proj.depths.shape[0]
    opacity = proj.log_opacities.exp()
    opacity = opacity - (opacity - opacity.clamp(max=OPACITY_CAP)).detach()
    features = torch.cat([proj.colors, proj.depths.unsqueeze(-1)], dim=-1)
    backgrounds = torch.cat([background, background.new_zeros(batch, 1)], dim=-1)
    offsets = lists.offsets.reshape(batch, lists.tiles_y, lists.tiles_x).to(torch.int32)
    out, alpha = rasterize_to_pixels(
        proj.means2d + 0.5,
        proj.conics,
        features,
        opacity,
        width,
        height,
        TILE,
        offsets,
        lists.gaussian_ids.to(torch.int32),
        backgrounds=backgrounds,
    )
    out = out.permute(0, 3, 1, 2)
    return out[:, :3], alpha.permute(0, 3, 1, 2), out[:, 3:4]
