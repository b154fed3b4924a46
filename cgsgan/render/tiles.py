"""Which Gaussians each pixel cell composites, front to back.

INRIA's rule decides which 16x16 tiles a Gaussian may touch: the square of
side 2 * radius (3 sigma of the largest eigenvalue) around its centre, mapped
to tiles with `getRect`'s integer arithmetic. Every pixel of a selected tile
then evaluates the Gaussian, so contributions reach past 3 sigma up to the
tile border.

Within those tiles we list a Gaussian only in the cells (16x16 tiles or finer
squares of 8 or 4 pixels) where some pixel can composite it: a pixel skips a
Gaussian whose alpha = opacity * exp(-q / 2) is below 1/255, i.e. whose
Mahalanobis distance q exceeds Q = 2 ln(255 opacity). The pixels within reach
form an ellipse, and for each row of cells we compute the exact x-range of
that ellipse, so only cells it overlaps are listed. The image is the same as
INRIA's (skipped evaluations stay skipped); there is just far less to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cgsgan.render.projection import Projection

TILE = 16  # INRIA's tile: the unit of Gaussian selection
_LN_255 = math.log(255.0)
_Q_SLACK = 1e-4  # relative margin on Q, so rounding never drops a Gaussian a pixel composites
_PIXEL_SLACK = 1e-3


@dataclass
class TileLists:
    """Per-cell depth-sorted Gaussian lists of B images; cells numbered b * C + cy * cells_x + cx."""

    gaussian_ids: Tensor  # [M] int32 index into the flattened [B * N] Gaussians, by cell then depth
    offsets: Tensor  # [B * C] int64 first entry of each cell
    counts: Tensor  # [B * C] int64 number of entries of each cell
    cell: int  # pixels per cell side (16, 8 or 4)
    cells_x: int
    cells_y: int

    @property
    def cells_per_image(self) -> int:
        return self.cells_x * self.cells_y


_FIELDS = ("px", "py", "a", "b", "c", "q_max", "ex", "ey", "cov_xx", "cov_xy", "col0", "col1", "row0", "row1")


def _gaussian_ranges(proj: Projection, height: int, width: int, cell: int) -> tuple[Tensor, Tensor]:
    """Live mask [B * N] and a table [B * N, len(_FIELDS)] of what the row spans need."""
    cells_x, cells_y = -(-width // cell), -(-height // cell)
    per_tile = TILE // cell
    px, py = proj.means2d.detach().reshape(-1, 2).unbind(-1)
    radius = proj.radii.reshape(-1).to(px.dtype)
    # getRect: (int)((p - r) / 16) and (int)((p + r + 15) / 16), clamped to the grid. The C cast
    # truncates toward zero; negative values clamp to 0 either way, so floor is the same.
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    col0 = torch.floor((px - radius) / TILE).clamp(0, tiles_x) * per_tile
    col1 = (torch.floor((px + radius + TILE - 1) / TILE).clamp(0, tiles_x) * per_tile).clamp(max=cells_x)
    row0 = torch.floor((py - radius) / TILE).clamp(0, tiles_y) * per_tile
    row1 = (torch.floor((py + radius + TILE - 1) / TILE).clamp(0, tiles_y) * per_tile).clamp(max=cells_y)

    # Reach: pixels with q <= Q lie within +-sqrt(Q cov_xx) in x and +-sqrt(Q cov_yy) in y.
    q_max = 2.0 * (proj.log_opacities.detach().reshape(-1) + _LN_255)
    reach = q_max >= 0
    q_max = q_max.clamp(min=0) * (1 + _Q_SLACK) + _Q_SLACK
    cov_xx, cov_xy, cov_yy = proj.cov2d.detach().reshape(-1, 3).unbind(-1)
    ey = torch.sqrt(q_max * cov_yy)
    ex = torch.sqrt(q_max * cov_xx)
    row0 = torch.maximum(row0, torch.floor(torch.ceil(py - ey - _PIXEL_SLACK).clamp(min=0) / cell))
    row1 = torch.minimum(row1, torch.floor(torch.floor(py + ey + _PIXEL_SLACK).clamp(max=height - 1) / cell) + 1)
    col0 = torch.maximum(col0, torch.floor(torch.ceil(px - ex - _PIXEL_SLACK).clamp(min=0) / cell))
    col1 = torch.minimum(col1, torch.floor(torch.floor(px + ex + _PIXEL_SLACK).clamp(max=width - 1) / cell) + 1)
    live = (proj.radii.reshape(-1) > 0) & reach & (row1 > row0) & (col1 > col0)
    a, b, c = proj.conics.detach().reshape(-1, 3).unbind(-1)
    table = torch.stack([px, py, a, b, c, q_max, ex, ey, cov_xx, cov_xy, col0, col1, row0, row1], dim=1)
    return live, table


def _row_spans(g: dict[str, Tensor], cy: Tensor, height: int, cell: int) -> tuple[Tensor, Tensor]:
    """Exact x-range (relative to the centre) of the ellipse q <= Q within each cell row's pixel band.

    All tensors are per row [R]. q(d) = a dx^2 + 2 b dx dy + c dy^2. At height dy the ellipse spans
    dx = (-b dy +- sqrt(a Q - D dy^2)) / a with D = ac - b^2. The left edge is convex in dy (the right
    edge concave), so over a band it is extreme at the ellipse's leftmost (rightmost) point when that
    point's dy lies in the band, else at one of the band's ends.
    """
    a, b, c, q = g["a"], g["b"], g["c"], g["q_max"]
    lo = torch.maximum(cy * cell - g["py"], -g["ey"])
    hi = torch.minimum(torch.clamp(cy * cell + (cell - 1), max=height - 1) - g["py"], g["ey"])
    det = a * c - b * b

    def edges(dy: Tensor) -> tuple[Tensor, Tensor]:
        half = torch.sqrt(torch.clamp(a * q - det * dy * dy, min=0)) / a
        mid = -b * dy / a
        return mid - half, mid + half

    left_lo, right_lo = edges(lo)
    left_hi, right_hi = edges(hi)
    # The rightmost point of the ellipse is at dy = cov_xy sqrt(Q / cov_xx), the leftmost at minus that.
    dy_right = g["cov_xy"] * g["ex"] / g["cov_xx"]
    left = torch.where((-dy_right >= lo) & (-dy_right <= hi), -g["ex"], torch.minimum(left_lo, left_hi))
    right = torch.where((dy_right >= lo) & (dy_right <= hi), g["ex"], torch.maximum(right_lo, right_hi))
    empty = lo > hi
    return left.masked_fill(empty, math.inf), right.masked_fill(empty, -math.inf)


def _depth_order(depths: Tensor) -> Tensor:
    """Stable argsort of positive depths (ties keep index order) through their bit patterns."""
    if depths.dtype == torch.float64:
        keys = depths.contiguous().view(torch.int64)
    else:
        keys = depths.float().contiguous().view(torch.int32)
    # Positive IEEE floats order like their bit patterns, and integer sorts are radix sorts.
    return torch.sort(keys, stable=True).indices


def _expand(counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For int32 counts [G]: owner [S] (the item of each slot), the first slot of each item [G], S."""
    owner = torch.repeat_interleave(counts)
    first = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    return owner, first, owner.numel()


def intersect_tiles(proj: Projection, height: int, width: int, cell: int = TILE) -> TileLists:
    """Depth-sorted (cell, Gaussian) lists of every image of the batch."""
    if cell not in (4, 8, 16):
        raise ValueError(f"cell must be 4, 8 or 16 pixels, got {cell}")
    batch, count = proj.radii.shape
    device = proj.radii.device
    cells_x, cells_y = -(-width // cell), -(-height // cell)
    per_image = cells_x * cells_y
    if batch * per_image >= 2**31 or batch * count >= 2**31:
        raise ValueError("too many cells or Gaussians for int32 indices; render in smaller batches")

    live, table = _gaussian_ranges(proj, height, width, cell)
    flat = live.nonzero().squeeze(-1)
    flat = flat.index_select(0, _depth_order(proj.depths.detach().reshape(-1).index_select(0, flat)))
    flat = flat.to(torch.int32)
    table = table.index_select(0, flat)

    # One entry per (Gaussian, cell row), then the exact column span of each row.
    field = {name: i for i, name in enumerate(_FIELDS)}
    rows = (table[:, field["row1"]] - table[:, field["row0"]]).to(torch.int32)
    owner, first, n_rows = _expand(rows)
    table = table.index_select(0, owner)
    g = {name: table[:, i] for name, i in field.items()}
    rank = torch.arange(n_rows, dtype=torch.int32, device=device) - first.index_select(0, owner)
    cy = g["row0"] + rank
    left, right = _row_spans(g, cy, height, cell)
    c0 = torch.maximum(g["col0"], torch.floor(torch.ceil(g["px"] + left - _PIXEL_SLACK).clamp(min=0) / cell))
    c1 = torch.floor(torch.floor(g["px"] + right + _PIXEL_SLACK).clamp(max=width - 1) / cell) + 1
    cols = (torch.minimum(g["col1"], c1) - c0).clamp(min=0).to(torch.int32)

    # One entry per (Gaussian, cell): consecutive cells of a row.
    gaussian_of_row = flat.index_select(0, owner)
    first_cell = (gaussian_of_row // count) * per_image + cy.to(torch.int32) * cells_x + c0.to(torch.int32)
    owner, first, n_pairs = _expand(cols)
    cell_ids = torch.arange(n_pairs, dtype=torch.int32, device=device) + (first_cell - first).index_select(0, owner)
    gaussian_ids = gaussian_of_row.index_select(0, owner)

    # Entries are in depth order; a stable sort by cell keeps that order within each cell.
    cell_ids, perm = torch.sort(cell_ids, stable=True)
    gaussian_ids = gaussian_ids.index_select(0, perm)
    counts = torch.bincount(cell_ids, minlength=batch * per_image)
    offsets = torch.cumsum(counts, 0) - counts
    return TileLists(gaussian_ids, offsets, counts, cell, cells_x, cells_y)
