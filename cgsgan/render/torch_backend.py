"""Pure-PyTorch alpha compositing of tile lists: any device, differentiable, memory-bounded.

Per pixel, front to back (INRIA semantics): alpha = min(0.99, o * exp(power)),
skipped below 1/255; stop before the Gaussian that would take the
transmittance below 1e-4; colour and depth are sum f_i alpha_i T_i.

How it is computed. Work is done per *cell* (an 8x8 or 4x4 square of a 16x16
tile): a cell walks its tile's depth-sorted list and takes the entries whose
mask has its bit. A pool of A cells is composited in rounds: each cell takes
its next K entries, so a round is a dense [A, K, P] block (P pixels a cell).
The exponent log2(o) + power * log2(e) of a pixel relative to its cell centre
is a quadratic in the pixel's offset, so the whole block is one matrix product
[A * K, 6] x [6, P], then exp2; transmittance is a cumulative product over K.
The round's large buffers are allocated once per call and reused.
A cell leaves the pool once all its pixels have stopped or its list is done,
and a waiting cell takes its slot, so rounds keep a cache-sized shape and no
pixels x Gaussians matrix of the whole image ever exists.

The backward pass replays the recorded rounds front to back, recomputing
alpha and transmittance instead of storing them; the suffix sums that the
gradient of alpha needs are the forward's totals minus a running prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from cgsgan.render.projection import ALPHA_MIN, Projection
from cgsgan.render.tiles import TILE, TileLists

ALPHA_MAX = 0.99
T_MIN = 1e-4  # stop before transmittance falls below this
LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
_E_MIN = -20.0  # exp2(-20) < 1/255: clamping there avoids denormals and changes nothing
_E_MAX = math.log2(ALPHA_MAX)
_PAD_LOG2_OPACITY = -1000.0  # the padding entry has alpha 0
CHANNELS = 4  # r, g, b, depth
_TINY = 1e-20  # keeps suffix / T finite where both are 0 (the weight is 0 there)
SCAN_LOOP_MIN_PIXELS = 32768  # CPU rounds with at least A * P pixels scan over K with slab ops
DEFAULT_BUDGET = 1 << 21  # elements of one round's block (8 MB in float32); fewer, larger rounds pay off
TABLE_COLUMNS = 10  # x, y, a, b, c, log2 opacity, r, g, b, depth (internally one more: ones)


def gaussian_table(proj: Projection) -> Tensor:
    """The per-Gaussian rows the compositor reads, [B * N, TABLE_COLUMNS] (opacity as log2 for exp2)."""
    table = torch.cat(
        [
            proj.means2d,
            proj.conics,
            proj.log_opacities.unsqueeze(-1) * LOG2E,
            proj.colors,
            proj.depths.unsqueeze(-1),
        ],
        dim=-1,
    )
    return table.reshape(-1, TABLE_COLUMNS)


# ------------------------------------------------------------------ cell layout
def cells_per_tile(lists: TileLists) -> int:
    return lists.split * lists.split


def in_image_mask(lists: TileLists, batch: int, height: int, width: int, dtype, device) -> Tensor:
    """[B * T * S, P] 1 for pixels inside the image, 0 in the padding of edge tiles."""
    ys = torch.arange(lists.tiles_y * TILE, device=device) < height
    xs = torch.arange(lists.tiles_x * TILE, device=device) < width
    mask = (ys[:, None] & xs[None, :]).to(dtype).unsqueeze(0).expand(batch, -1, -1)
    return to_cells(mask.unsqueeze(1), lists).squeeze(1)


def to_image(cells: Tensor, batch: int, lists: TileLists, height: int, width: int) -> Tensor:
    """[B * T * S, ch, P] per-cell pixels -> [B, ch, H, W]."""
    s, n, ch = lists.split, lists.cell, cells.shape[1]
    img = cells.reshape(batch, lists.tiles_y, lists.tiles_x, s, s, ch, n, n)
    img = img.permute(0, 5, 1, 3, 6, 2, 4, 7).reshape(batch, ch, lists.tiles_y * TILE, lists.tiles_x * TILE)
    return img[:, :, :height, :width]


def to_cells(image: Tensor, lists: TileLists) -> Tensor:
    """[B, ch, H, W] -> [B * T * S, ch, P] (zeros in the padding of edge tiles)."""
    b, ch, h, w = image.shape
    s, n = lists.split, lists.cell
    image = F.pad(image, (0, lists.tiles_x * TILE - w, 0, lists.tiles_y * TILE - h))
    img = image.reshape(b, ch, lists.tiles_y, s, n, lists.tiles_x, s, n)
    return img.permute(0, 2, 5, 3, 6, 1, 4, 7).reshape(-1, ch, n * n)


def _pixel_features(cell: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[6, P] features (qx^2, qx qy, qy^2, qx, qy, 1) of each pixel's offset from its cell centre."""
    r = torch.arange(cell, dtype=dtype, device=device) - (cell - 1) / 2
    qy, qx = torch.meshgrid(r, r, indexing="ij")
    qx, qy = qx.flatten(), qy.flatten()
    return torch.stack([qx * qx, qx * qy, qy * qy, qx, qy, torch.ones_like(qx)])


def _cell_centres(lists: TileLists, cells: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (x [A], y [A]) of the centres of the given cells."""
    s = lists.split
    tile, sub = torch.div(cells, s * s, rounding_mode="floor"), cells % (s * s)
    local = tile % lists.tiles_per_image
    tx, ty = local % lists.tiles_x, torch.div(local, lists.tiles_x, rounding_mode="floor")
    half = (lists.cell - 1) / 2
    cx = (tx * TILE + (sub % s) * lists.cell).to(dtype) + half
    cy = (ty * TILE + torch.div(sub, s, rounding_mode="floor") * lists.cell).to(dtype) + half
    return cx, cy


# ----------------------------------------------------------------------- rounds
@dataclass
class Step:
    """One recorded round, and how the pool changes after it."""

    cells: Tensor  # [A] cell in each slot
    start: Tensor  # [A] list index where the slot's window starts
    end: Tensor  # [A] list index past the slot's tile list
    width: int  # K entries per slot
    window: int  # W list entries scanned per slot
    refill_slots: Tensor | None = None  # slots that take a waiting cell after this round
    refill_cells: Tensor | None = None
    keep: Tensor | None = None  # slots kept once no cell is waiting


@dataclass
class _Padded:
    """Tile lists with a padding entry appended (the padding Gaussian: alpha 0, mask 0), and the
    pixel coordinates of every cell's centre."""

    lists: TileLists
    ids: Tensor  # [M + 1]
    masks: Tensor  # [M + 1]
    centres: Tensor  # [cells, 2]

    @classmethod
    def of(cls, lists: TileLists, pad_id: int, batch: int, dtype: torch.dtype) -> _Padded:
        ids = torch.cat([lists.gaussian_ids, lists.gaussian_ids.new_full((1,), pad_id)])
        masks = torch.cat([lists.masks, lists.masks.new_zeros(1)])
        cells = torch.arange(batch * lists.tiles_per_image * cells_per_tile(lists), device=ids.device)
        return cls(lists, ids, masks, torch.stack(_cell_centres(lists, cells, dtype), dim=1))


def _select(padded: _Padded, step: Step) -> tuple[Tensor, Tensor]:
    """Gaussian ids [A * K] of each slot's next K entries that carry its cell bit, and entries consumed [A].

    Slots with fewer than K such entries in their window are padded with the padding id (alpha 0).
    """
    lists = padded.lists
    a, k, w = step.cells.numel(), step.width, step.window
    pad = lists.gaussian_ids.numel()  # index of the padding entry
    index = step.start.unsqueeze(1) + torch.arange(w, device=step.start.device)
    index = torch.where(index < step.end.unsqueeze(1), index, pad)
    if lists.split == 1:  # the cell is the whole tile: every entry counts
        return padded.ids.index_select(0, index.view(-1)), torch.full_like(step.start, w)
    bit = 1 << (step.cells % cells_per_tile(lists)).to(torch.int32)
    take = (padded.masks.index_select(0, index.view(-1)).view(a, w) & bit.unsqueeze(1)) != 0
    rank = torch.cumsum(take, 1, dtype=torch.int32)
    consumed = torch.where(rank[:, -1] >= k, (rank < k).sum(1, dtype=torch.int64) + 1, w)
    dest = torch.where(take & (rank <= k), rank.long() - 1, k)
    chosen = torch.full((a, k + 1), pad, dtype=index.dtype, device=index.device).scatter_(1, dest, index)
    return padded.ids.index_select(0, chosen[:, :k].reshape(-1)), consumed


def _coefficients(rows: Tensor, centres: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exponent coefficients psi [A * K, 6] and the offsets mx, my [A, K] from the cell centres.

    rows: [A * K, 11] rows of the scaled table (x, y, s0, s1, s2, log2 o, ...), centres [A, 2], where s0, s1, s2
    = -log2(e) (a / 2, b, c / 2). The base-2 exponent of a pixel at offset q from its cell centre is
    phi(q) . psi, with phi = (qx^2, qx qy, qy^2, qx, qy, 1); for the Gaussian at offset m from the
    centre, psi = (s0, s1, s2, -(2 s0 mx + s1 my), -(s1 mx + 2 s2 my), s0 mx^2 + s1 mx my + s2 my^2 + lo).
    """
    a = centres.shape[0]
    r = rows.view(a, -1, rows.shape[1])
    m = r[..., :2] - centres.unsqueeze(1)
    mx, my = m[..., 0], m[..., 1]
    s0, s1, s2 = r[..., 2], r[..., 3], r[..., 4]
    u, v, w = s0 * mx, s1 * my, s2 * my
    psi = torch.empty(a, r.shape[1], 6, dtype=rows.dtype, device=rows.device)
    psi[..., :3] = r[..., 2:5]
    torch.add(v, u, alpha=2.0, out=psi[..., 3]).neg_()
    torch.add(s1 * mx, w, alpha=2.0, out=psi[..., 4]).neg_()
    torch.addcmul(torch.addcmul(r[..., 5], u + v, mx), w, my, out=psi[..., 5])
    return psi.view(-1, 6), mx, my


def _alpha(psi: Tensor, phi: Tensor, out: Tensor) -> Tensor:
    """alpha [A, K, P] written into `out`: one matrix product for every exponent of the round."""
    torch.mm(psi, phi, out=out.view(psi.shape[0], phi.shape[1])).clamp_(_E_MIN, _E_MAX)
    return F.threshold_(out.exp2_(), ALPHA_MIN, 0.0)


def _scan_(x: Tensor, op) -> Tensor:
    """In-place inclusive scan over dim 1 of x [A, K, P] with op (mul_ or add_).

    Scans over a middle dim are slow on CPU; for wide rounds a loop of slab ops is faster.
    """
    if x.device.type != "cpu" or x.shape[0] * x.shape[2] < SCAN_LOOP_MIN_PIXELS:
        return x.cumprod_(1) if op is torch.Tensor.mul_ else x.cumsum_(1)
    for j in range(1, x.shape[1]):
        op(x[:, j], x[:, j - 1])
    return x


def _composite_weights(alpha: Tensor, t_in: Tensor, trans: Tensor) -> Tensor:
    """Compositing weights [A, K, P], written over alpha; trans [A, K + 1, P] gets the transmittance.

    t_in [A, P] is the transmittance before the round (0 for pixels that have stopped). Row k + 1 of
    trans is the transmittance after entry k, set to 0 from the entry that would take it below 1e-4:
    that entry and every later one are skipped, as INRIA does. The weight of entry k is then
    alpha_k T_k = T_k+1 alpha_k / (1 - alpha_k), which is 0 for the skipped entries, with no masks.
    """
    a, k, p = alpha.shape
    trans = trans.view(a, k + 1, p)
    trans[:, 0] = t_in
    torch.sub(alpha.new_ones(()), alpha, out=trans[:, 1:])
    alpha.div_(trans[:, 1:])  # alpha / (1 - alpha); finite since alpha <= 0.99
    _scan_(trans, torch.Tensor.mul_)
    F.threshold_(trans[:, 1:], T_MIN, 0.0)
    return alpha.mul_(trans[:, 1:])


def _round_size(budget: int, pixels: int, slots: int) -> int:
    """Elements of the largest [A, K + 1, P] block a round can use (rounds never exceed the budget,
    except that a single slot always gets at least 32 entries)."""
    return max(budget, pixels * 32) + slots * pixels


class _Workspace:
    """Flat buffers for a round's large tensors, allocated once per pass (fresh memory is slow to touch)."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device, count: int):
        self.buffers = [torch.empty(size, dtype=dtype, device=device) for _ in range(count)]

    def view(self, i: int, *shape: int) -> Tensor:
        return self.buffers[i][: math.prod(shape)].view(*shape)


def _round_width(active: int, pixels: int, budget: int, previous: int) -> int:
    """Entries per slot: 32, more once the pool drains (A * P * K stays near the budget).

    The width at most doubles from one round to the next: most pixels stop within their first few
    dozen Gaussians, and the cells still going after several rounds are the ones with long tails.
    """
    width = 32
    while width < min(512, 2 * previous) and active * pixels * width * 2 <= budget:
        width *= 2
    return width


class _Pool:
    """The cells being composited, one slot each, with where each stands in its tile's list."""

    def __init__(self, lists: TileLists, budget: int, window_factor: int):
        s2 = cells_per_tile(lists)
        self.lists, self.budget, self.pixels, self.window_factor = lists, budget, lists.cell**2, window_factor
        # Cells of non-empty tiles, longest lists first so the last rounds are not one straggler.
        tiles = torch.argsort(lists.counts, descending=True, stable=True)[: int((lists.counts > 0).sum())]
        self.waiting = (tiles.unsqueeze(1) * s2 + torch.arange(s2, device=tiles.device)).view(-1)
        size = max(1, budget // (self.pixels * 32))
        self.cells, self.waiting = self.waiting[:size], self.waiting[size:]
        self.start, self.end = self._list_range(self.cells)
        self.width = 32

    def _list_range(self, cells: Tensor) -> tuple[Tensor, Tensor]:
        tile = torch.div(cells, cells_per_tile(self.lists), rounding_mode="floor")
        start = self.lists.offsets.index_select(0, tile)
        return start, start + self.lists.counts.index_select(0, tile)

    def step(self) -> Step:
        self.width = _round_width(self.cells.numel(), self.pixels, self.budget, self.width)
        return Step(self.cells, self.start, self.end, self.width, self.width * self.window_factor)

    def advance(self, step: Step, consumed: Tensor, finished: Tensor) -> Tensor:
        """Move past a round; finished [A] slots are refilled or dropped. Returns their indices."""
        self.start = self.start + consumed
        done = finished.nonzero().squeeze(1)
        if not done.numel():
            return done
        cells, start, end = self.cells.clone(), self.start.clone(), self.end.clone()
        refill = min(done.numel(), self.waiting.numel())
        if refill:
            step.refill_slots, step.refill_cells = done[:refill], self.waiting[:refill]
            self.waiting = self.waiting[refill:]
            cells[step.refill_slots] = step.refill_cells
            start[step.refill_slots], end[step.refill_slots] = self._list_range(step.refill_cells)
        if refill < done.numel():
            kept = torch.ones_like(finished)
            kept[done[refill:]] = False
            step.keep = kept.nonzero().squeeze(1)
            cells, start, end = cells[step.keep], start[step.keep], end[step.keep]
        self.cells, self.start, self.end = cells, start, end
        return done


def _advance_state(step: Step, state: dict[str, Tensor], fresh: Callable[[Tensor], dict[str, Tensor]]) -> dict:
    """Apply a step's pool change to per-slot state tensors (the same in both passes)."""
    if step.refill_slots is not None:
        new = fresh(step.refill_cells)
        for name, value in state.items():
            value.index_copy_(0, step.refill_slots, new[name])
    if step.keep is not None:
        state = {name: value.index_select(0, step.keep) for name, value in state.items()}
    return state


def _round_inputs(padded: _Padded, table: Tensor, step: Step):
    """Entry ids [A * K], their table rows [A * K, 10], psi [6, A * K], mx, my, and entries consumed."""
    entry, consumed = _select(padded, step)
    rows = table.index_select(0, entry)
    psi, mx, my = _coefficients(rows, padded.centres.index_select(0, step.cells))
    return entry, rows, psi, mx, my, consumed


def _features(rows: Tensor, slots: int, ones: bool = False) -> Tensor:
    """(r, g, b, depth) of the round's entries as [A, 4, K], or [A, 5, K] with the table's column of ones."""
    width = CHANNELS + 1 if ones else CHANNELS
    return rows[:, 6 : 6 + width].reshape(slots, -1, width).transpose(1, 2)


# ---------------------------------------------------------------------- passes
def composite_forward(table: Tensor, padded: _Padded, batch: int, height: int, width: int, budget: int):
    """Accumulated (r, g, b, depth) [cells, 4, P], final transmittance [cells, P] and the steps.

    table: [N + 1, 10] scaled table (see `_coefficients`), ending with the padding row.
    """
    device, dtype, lists = table.device, table.dtype, padded.lists
    pixels = lists.cell**2
    phi = _pixel_features(lists.cell, dtype, device)
    in_image = in_image_mask(lists, batch, height, width, dtype, device)
    out_acc = torch.zeros(in_image.shape[0], CHANNELS, pixels, dtype=dtype, device=device)
    out_trans = in_image.clone()  # cells without Gaussians stay transparent
    pool = _Pool(lists, budget, window_factor=min(lists.split, 2))
    work = _Workspace(_round_size(budget, pixels, pool.cells.numel()), dtype, device, count=2)

    def fresh(cells: Tensor) -> dict[str, Tensor]:
        t = in_image.index_select(0, cells)  # padding pixels of edge tiles start stopped
        # acc: r, g, b, depth and the sum of the weights (which gives T where a pixel stops)
        zeros = torch.zeros(cells.numel(), CHANNELS + 1, pixels, dtype=dtype, device=device)
        return dict(t_run=t, t_stop=t.clone(), acc=zeros)

    state = fresh(pool.cells)
    steps: list[Step] = []
    while pool.cells.numel():
        step = pool.step()
        steps.append(step)
        a, k = step.cells.numel(), step.width
        _, rows, psi, _, _, consumed = _round_inputs(padded, table, step)
        trans = work.view(1, a, k + 1, pixels)
        t_in, acc = state["t_run"], state["acc"]  # t_in is 0 for pixels that have stopped
        weights = _composite_weights(_alpha(psi, phi, work.view(0, a, k, pixels)), t_in, trans)
        weight_sum = acc[:, CHANNELS].clone()
        acc.baddbmm_(_features(rows, a, ones=True), weights)
        t_last = trans[:, -1]  # 0 where the pixel stopped in this round or before
        stopped = (t_in > 0) & (t_last == 0)
        # T where a pixel stops: T before the round minus the weights it composited in the round.
        state["t_stop"] = torch.where(stopped, t_in - (acc[:, CHANNELS] - weight_sum), state["t_stop"])
        state["t_run"] = t_last.clone()

        finished = (step.start + consumed >= step.end) | (t_last.amax(1) == 0)
        done = pool.advance(step, consumed, finished)
        if done.numel():
            cells = step.cells.index_select(0, done)
            t = state["t_run"].index_select(0, done)
            t = torch.where(t > 0, t, state["t_stop"].index_select(0, done))
            out_acc.index_copy_(0, cells, state["acc"].index_select(0, done)[:, :CHANNELS])
            out_trans.index_copy_(0, cells, t)
            state = _advance_state(step, state, fresh)
    return out_acc, out_trans, steps


def _table_grad(grad_psi: Tensor, psi: Tensor, mx: Tensor, my: Tensor) -> Tensor:
    """Chain rule from psi [A * K, 6] to the scaled table columns (x, y, s0, s1, s2, lo): [6, A * K].

    psi3 = -(2 s0 mx + s1 my), psi4 = -(s1 mx + 2 s2 my), psi5 = s0 mx^2 + s1 mx my + s2 my^2 + lo,
    so d psi5 / d mx = -psi3 and d psi5 / d my = -psi4.
    """
    d0, d1, d2, d3, d4, d5 = grad_psi.t()
    s0, s1, s2, p3, p4 = psi.t()[:5]
    mx, my = mx.reshape(-1), my.reshape(-1)
    return torch.stack(
        [
            -(2 * s0 * d3 + s1 * d4 + p3 * d5),
            -(s1 * d3 + 2 * s2 * d4 + p4 * d5),
            d0 + mx * (mx * d5 - 2 * d3),
            d1 + mx * my * d5 - my * d3 - mx * d4,
            d2 + my * (my * d5 - 2 * d4),
            d5,
        ]
    )


def _zero_capped_(grad: Tensor, rows: Tensor, psi: Tensor, phi: Tensor) -> None:
    """Zero the gradient where alpha hit the 0.99 cap (only entries with opacity above 0.99 can)."""
    entries = (rows[:, 5] >= _E_MAX).nonzero().squeeze(1)
    if not entries.numel():
        return
    flat = grad.view(-1, phi.shape[1])
    exponent = psi.index_select(0, entries) @ phi
    flat.index_copy_(0, entries, flat.index_select(0, entries).masked_fill_(exponent >= _E_MAX, 0.0))


def composite_backward(table, padded, steps, out_acc, out_trans, grad_acc, grad_trans, in_image, budget) -> Tensor:
    """Gradient [10, N + 1] of the scaled table's columns from those of the per-cell outputs."""
    device, dtype, lists = table.device, table.dtype, padded.lists
    pixels = lists.cell**2
    phi = _pixel_features(lists.cell, dtype, device)
    phi_t = phi.t().contiguous()
    grads = torch.zeros(TABLE_COLUMNS, table.shape[0], dtype=dtype, device=device)
    may_cap = bool((table[:, 5] >= _E_MAX).any())  # some opacity above 0.99
    # Per pixel: sum_j w_j (g . f_j) + T_final g_T, the total every suffix sum is taken from.
    total = (grad_acc * out_acc).sum(1) + grad_trans * out_trans
    slots = max((step.cells.numel() for step in steps), default=0)
    work = _Workspace(_round_size(budget, pixels, slots), dtype, device, count=4)

    def fresh(cells: Tensor) -> dict[str, Tensor]:
        t = in_image.index_select(0, cells)
        return dict(
            t_run=t, prefix=torch.zeros_like(t),
            go=grad_acc.index_select(0, cells), total=total.index_select(0, cells),
        )  # fmt: skip

    state = fresh(steps[0].cells) if steps else {}
    for step in steps:
        a, k = step.cells.numel(), step.width
        entry, rows, psi, mx, my, _ = _round_inputs(padded, table, step)
        trans = work.view(1, a, k + 1, pixels)
        weights = _composite_weights(_alpha(psi, phi, work.view(0, a, k, pixels)), state["t_run"], trans)
        t_next = trans[:, -1].clone()
        go = state["go"]
        grad_feat = torch.bmm(weights, go.transpose(1, 2))  # [A, K, 4]
        g_dot_f = torch.bmm(_features(rows, a).transpose(1, 2), go, out=work.view(2, a, k, pixels))
        # dL/d exponent_k / ln 2 = alpha_k dL/d alpha_k = w_k (g.f_k - suffix_k / T_k+1), where
        # suffix_k = sum over later composited entries of w_j g.f_j + T_final g_T. Skipped entries
        # have w_k = 0: they get no gradient and add nothing to the sums.
        contrib = torch.mul(weights, g_dot_f, out=work.view(3, a, k, pixels))
        suffix = _scan_(contrib, torch.Tensor.add_).add_(state["prefix"].unsqueeze(1))
        prefix = suffix[:, -1].clone()
        suffix = torch.sub(state["total"].unsqueeze(1), suffix, out=suffix)
        suffix.div_(trans[:, 1:].add_(_TINY))
        grad_exp = g_dot_f.sub_(suffix).mul_(weights)
        if may_cap:
            _zero_capped_(grad_exp, rows, psi, phi)
        grad_psi = grad_exp.view(a * k, pixels) @ phi_t  # [A * K, 6]
        rows_grad = torch.cat([_table_grad(grad_psi.mul_(LN2), psi, mx, my), grad_feat.reshape(-1, CHANNELS).t()])
        grads.index_add_(1, entry.long(), rows_grad)

        state["t_run"] = t_next
        state["prefix"] = prefix
        state = _advance_state(step, state, fresh)
    return grads


def _pad_table(table: Tensor) -> Tensor:
    """Append the padding Gaussian: alpha 0 everywhere."""
    pad = table.new_zeros(1, table.shape[1])
    pad[0, 5] = _PAD_LOG2_OPACITY
    return torch.cat([table, pad])


def _column_scale(table: Tensor) -> Tensor:
    """[10] factors from (x, y, a, b, c, ...) to the scaled columns (x, y, s0, s1, s2, ...)."""
    scale = table.new_ones(TABLE_COLUMNS)
    scale[2:5] = torch.tensor([-0.5 * LOG2E, -LOG2E, -0.5 * LOG2E], dtype=table.dtype)
    return scale


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, lists, batch, height, width, budget):
        padded = _Padded.of(lists, pad_id=table.shape[0], batch=batch, dtype=table.dtype)
        # The scaled columns (see `_coefficients`) and a column of ones, whose sum gives T at a stop.
        table = _pad_table(torch.cat([table * _column_scale(table), table.new_ones(table.shape[0], 1)], 1))
        acc, trans, steps = composite_forward(table, padded, batch, height, width, budget)
        ctx.save_for_backward(table, acc, trans)
        ctx.padded, ctx.steps, ctx.shape, ctx.budget = padded, steps, (batch, height, width), budget
        color = to_image(acc, batch, lists, height, width)
        t_img = to_image(trans.unsqueeze(1), batch, lists, height, width)
        return color, t_img

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_color, grad_t):
        table, acc, trans = ctx.saved_tensors
        padded, (batch, height, width) = ctx.padded, ctx.shape
        lists = padded.lists
        in_image = in_image_mask(lists, batch, height, width, table.dtype, table.device)
        grads = composite_backward(
            table, padded, ctx.steps, acc, trans,
            to_cells(grad_color, lists), to_cells(grad_t, lists).squeeze(1), in_image, ctx.budget,
        )  # fmt: skip
        return grads[:, :-1].t() * _column_scale(grads), None, None, None, None, None


def composite(
    table: Tensor, lists: TileLists, batch: int, height: int, width: int, budget: int = DEFAULT_BUDGET
) -> tuple[Tensor, Tensor]:
    """Composite tile lists front to back.

    table: [B * N, 10] per Gaussian: screen position x, y; inverse 2D covariance a, b, c; log2
    opacity; then the accumulated features r, g, b, depth.
    Returns sum f_i alpha_i T_i as [B, 4, H, W] and the final transmittance [B, 1, H, W].
    budget: elements of one round's [A, P, K] block; bounds memory and keeps rounds in cache.
    """
    return _Composite.apply(table, lists, batch, height, width, budget)
