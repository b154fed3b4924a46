"""Which Gaussians each 16x16 tile composites, front to back, and where inside the tile they reach.

INRIA's rule decides which tiles a Gaussian may touch: the square of side
2 * radius (3 sigma of the largest eigenvalue) around its centre, mapped to
tiles with `getRect`'s integer arithmetic. Every pixel of a selected tile then
evaluates the Gaussian, so contributions reach past 3 sigma up to the tile
border.

A pixel skips a Gaussian whose alpha = opacity * exp(-q / 2) is below 1/255,
i.e. whose Mahalanobis distance q exceeds Q = 2 ln(255 opacity). The pixels
within reach form an ellipse, so we list a Gaussian only in tiles that ellipse
overlaps, and with each entry we keep a bit mask of the finer *cells* (8x8 or
4x4 squares of the tile) it overlaps, from the exact x-span of the ellipse in
each band of pixel rows. A cell composites only the entries that have its bit,
which gives INRIA's image (skipped evaluations stay skipped) with far less work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cgsgan.render.projection import Projection

TILE = 16  # INRIA's tile: the unit of Gaussian selection
_LN_255 = math.log(255.0)
_Q_SLACK = 1e-4  # relative margin on Q, so rounding never drops a Gaussian that a pixel composites
_PIXEL_SLACK = 1e-3
_NO_CELL = 2**20  # "no cell" in cell-column minima (any real cell index is smaller)


@dataclass
class TileLists:
    """Per-tile depth-sorted Gaussian lists of B images; tiles numbered b * T + ty * tiles_x + tx."""

    gaussian_ids: Tensor  # [M] int32 index into the flattened [B * N] Gaussians, by tile then depth
    masks: Tensor  # [M] int32 bit qy * split + qx set where the entry reaches cell (qx, qy) of the tile
    offsets: Tensor  # [B * T] int64 first entry of each tile
    counts: Tensor  # [B * T] int64 number of entries of each tile
    cell: int  # pixels per cell side (16, 8 or 4); split = 16 // cell cells per tile side
    tiles_x: int
    tiles_y: int

    @property
    def split(self) -> int:
        return TILE // self.cell

    @property
    def tiles_per_image(self) -> int:
        return self.tiles_x * self.tiles_y


def _gaussian_ranges(proj: Projection, height: int, width: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Live mask [B * N] and per-Gaussian tile ranges and ellipse parameters."""
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    px, py = proj.means2d.detach().reshape(-1, 2).unbind(-1)
    radius = proj.radii.reshape(-1).to(px.dtype)
    # getRect: (int)((p - r) / 16) and (int)((p + r + 15) / 16), clamped to the grid. The C cast
    # truncates toward zero; negative values clamp to 0 either way, so floor is the same.
    col0 = torch.floor((px - radius) / TILE).clamp(0, tiles_x)
    col1 = torch.floor((px + radius + TILE - 1) / TILE).clamp(0, tiles_x)
    row0 = torch.floor((py - radius) / TILE).clamp(0, tiles_y)
    row1 = torch.floor((py + radius + TILE - 1) / TILE).clamp(0, tiles_y)

    # Reach: pixels with q <= Q lie within +-sqrt(Q cov_xx) in x and +-sqrt(Q cov_yy) in y.
    q_max = 2.0 * (proj.log_opacities.detach().reshape(-1) + _LN_255)
    reach = q_max >= 0
    q_max = q_max.clamp(min=0) * (1 + _Q_SLACK) + _Q_SLACK
    cov_xx, cov_xy, cov_yy = proj.cov2d.detach().reshape(-1, 3).unbind(-1)
    ey = torch.sqrt(q_max * cov_yy)
    ex = torch.sqrt(q_max * cov_xx)
    row0 = torch.maximum(row0, torch.floor(torch.ceil(py - ey - _PIXEL_SLACK).clamp(min=0) / TILE))
    row1 = torch.minimum(row1, torch.floor(torch.floor(py + ey + _PIXEL_SLACK).clamp(max=height - 1) / TILE) + 1)
    col0 = torch.maximum(col0, torch.floor(torch.ceil(px - ex - _PIXEL_SLACK).clamp(min=0) / TILE))
    col1 = torch.minimum(col1, torch.floor(torch.floor(px + ex + _PIXEL_SLACK).clamp(max=width - 1) / TILE) + 1)
    live = (proj.radii.reshape(-1) > 0) & reach & (row1 > row0) & (col1 > col0)
    a, b, c = proj.conics.detach().reshape(-1, 3).unbind(-1)
    # At height dy the ellipse spans dx = slope dy +- sqrt(h0 - h2 dy^2) (see `_band_spans`).
    fields = dict(px=px, py=py, slope=-b / a, h0=q_max / a, h2=(a * c - b * b) / (a * a))
    fields.update(ex=ex, ey=ey, right_dy=cov_xy * ex / cov_xx)
    fields.update(col0=col0, col1=col1, row0=row0, row1=row1)
    return live, fields


def _band_spans(g: dict[str, Tensor], top: Tensor, bottom: Tensor) -> tuple[Tensor, Tensor]:
    """Exact x-range, relative to the centre, of the ellipse q <= Q within pixel rows [top, bottom].

    Per row [R]; top and bottom carry a leading band dimension [S, R]. With q(d) = a dx^2 + 2 b dx dy
    + c dy^2, at height dy the ellipse spans dx = slope dy +- sqrt(h0 - h2 dy^2), slope = -b / a,
    h0 = Q / a, h2 = (ac - b^2) / a^2. The left edge is convex in dy (the right edge concave), so over
    a band it is extreme at the ellipse's leftmost (rightmost) point when that point's dy lies in the
    band, else at one of the band's ends. Empty bands give (inf, -inf).
    """
    lo = torch.maximum(top - g["py"], -g["ey"])
    hi = torch.minimum(bottom - g["py"], g["ey"])
    dy = torch.stack([lo, hi])  # [2, S, R]
    half = torch.sqrt((g["h0"] - g["h2"] * dy * dy).clamp_(min=0))
    mid = g["slope"] * dy
    left = torch.minimum(*(mid - half))
    right = torch.maximum(*(mid + half))
    dy_right = g["right_dy"]  # the rightmost point's dy; the leftmost is at minus that
    left = torch.where((-dy_right >= lo) & (-dy_right <= hi), -g["ex"], left)
    right = torch.where((dy_right >= lo) & (dy_right <= hi), g["ex"], right)
    empty = lo > hi
    return left.masked_fill_(empty, math.inf), right.masked_fill_(empty, -math.inf)


def _cell_masks(
    band_c0: list[Tensor], band_c1: list[Tensor], t0: Tensor, owner: Tensor, rank: Tensor, split: int
) -> Tensor:
    """Cell bit masks [M] of each (row, tile) entry: bit band * split + qx where band's span covers cell qx.

    band_c0, band_c1: per row [R] the cell-column range [c0, c1) of each band; the entry is tile
    t0 + rank of row `owner`.
    """
    if split == 1:
        return torch.ones_like(owner)
    # bits[lo, hi] = bits lo .. hi - 1 set, for 0 <= lo <= hi <= split
    r = torch.arange(split + 1, device=owner.device)
    bits = (((1 << r).unsqueeze(0) - (1 << r).unsqueeze(1)) * (r.unsqueeze(0) >= r.unsqueeze(1))).to(torch.int32)
    bits = bits.view(-1)
    first_cell = (t0.index_select(0, owner) + rank) * split
    masks = torch.zeros_like(owner)
    for band, (c0, c1) in enumerate(zip(band_c0, band_c1, strict=True)):
        lo = (c0.index_select(0, owner) - first_cell).clamp_(0, split)
        hi = (c1.index_select(0, owner) - first_cell).clamp_(0, split)
        hi = torch.maximum(hi, lo)
        masks |= bits.index_select(0, lo * (split + 1) + hi) << (band * split)
    return masks


def _depth_order(depths: Tensor) -> Tensor:
    """Stable argsort of positive depths (ties keep index order) through their bit patterns."""
    if depths.dtype == torch.float64:
        keys = depths.contiguous().view(torch.int64)
    else:
        keys = depths.float().contiguous().view(torch.int32)
    # Positive IEEE floats order like their bit patterns; integer keys sort fastest.
    return torch.sort(keys, stable=True).indices


def _expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For int32 counts [G]: owner [S] (the item of each slot) and the first slot of each item [G]."""
    owner = torch.repeat_interleave(counts)
    first = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    return owner, first


def intersect_tiles(proj: Projection, height: int, width: int, cell: int = 8) -> TileLists:
    """Depth-sorted (tile, Gaussian) lists of every image of the batch, with cell masks."""
    if cell not in (4, 8, 16):
        raise ValueError(f"cell must be 4, 8 or 16 pixels, got {cell}")
    batch, count = proj.radii.shape
    device = proj.radii.device
    split = TILE // cell
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    per_image = tiles_x * tiles_y
    if batch * per_image >= 2**31 or batch * count >= 2**31:
        raise ValueError("too many tiles or Gaussians for int32 indices; render in smaller batches")

    live, fields = _gaussian_ranges(proj, height, width)
    flat = live.nonzero().squeeze(-1)
    flat = flat.index_select(0, _depth_order(proj.depths.detach().reshape(-1).index_select(0, flat)))
    flat = flat.to(torch.int32)
    row1 = fields.pop("row1")

    # One entry per (Gaussian, tile row), with the ellipse's cell span in each band of `cell` pixel rows.
    n_rows = (row1.index_select(0, flat) - fields["row0"].index_select(0, flat)).to(torch.int32)
    owner, first = _expand(n_rows)
    gaussian_of_row = flat.index_select(0, owner)
    g = {name: value.index_select(0, gaussian_of_row) for name, value in fields.items()}
    ty = g["row0"].to(torch.int32) + (
        torch.arange(owner.numel(), dtype=torch.int32, device=device) - first.index_select(0, owner)
    )
    # Pixel rows of each band [split, R], then the ellipse's span over each band, as cell columns.
    top = (ty * TILE).unsqueeze(0) + (torch.arange(split, dtype=torch.int32, device=device) * cell).unsqueeze(1)
    left, right = _band_spans(g, top, torch.clamp(top + (cell - 1), max=height - 1))
    # Empty bands have infinite edges: clamp to finite values before any integer cast (casting inf is
    # undefined: x86 gives INT_MIN, CUDA saturates to INT_MAX), and give them the empty range [0, 0).
    x0 = torch.ceil(g["px"] + left - _PIXEL_SLACK).clamp_(0, width)
    x1 = torch.floor(g["px"] + right + _PIXEL_SLACK).clamp_(-1, width - 1)
    empty = x1 < x0
    c0 = torch.floor(x0 / cell).to(torch.int32).masked_fill_(empty, 0)
    c1 = (torch.floor(x1 / cell) + 1).to(torch.int32).masked_fill_(empty, 0)
    band_c0, band_c1 = c0.unbind(0), c1.unbind(0)
    c0_min = c0.masked_fill(empty, _NO_CELL).amin(0)  # over the bands the ellipse reaches
    c1_max = c1.amax(0)
    t0 = torch.maximum(g["col0"].to(torch.int32), torch.div(c0_min, split, rounding_mode="floor"))
    t1 = torch.minimum(g["col1"].to(torch.int32), torch.div(c1_max + split - 1, split, rounding_mode="floor"))
    n_tiles = (t1 - t0).clamp_(min=0)

    # One entry per (Gaussian, tile): consecutive tiles of a row, each with its cell mask.
    first_tile = torch.div(gaussian_of_row, count, rounding_mode="floor") * per_image + ty * tiles_x + t0
    owner, first = _expand(n_tiles)
    rank = torch.arange(owner.numel(), dtype=torch.int32, device=device) - first.index_select(0, owner)
    tile_ids = first_tile.index_select(0, owner) + rank
    gaussian_ids = gaussian_of_row.index_select(0, owner)
    masks = _cell_masks(band_c0, band_c1, t0, owner, rank, split)

    # Entries are in depth order; a stable sort by tile keeps that order within each tile. The ids and
    # masks travel packed in one int64, so the random-access permutation is paid once.
    key_type = torch.int16 if batch * per_image <= 2**15 else torch.int32  # narrower keys sort faster
    tile_ids, perm = torch.sort(tile_ids.to(key_type), stable=True)
    packed = ((gaussian_ids.long() << 32) | masks.long()).index_select(0, perm)
    counts = torch.bincount(tile_ids.to(torch.int32), minlength=batch * per_image)
    offsets = torch.cumsum(counts, 0) - counts
    return TileLists((packed >> 32).to(torch.int32), packed.to(torch.int32), offsets, counts, cell, tiles_x, tiles_y)
