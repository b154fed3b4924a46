"""Pure-PyTorch alpha compositing of cell lists: any device, differentiable, memory-bounded.

Per pixel, front to back (INRIA semantics): alpha = min(0.99, o * exp(power)),
skipped below 1/255; stop before the Gaussian that would take the
transmittance below 1e-4; colour and depth are sum f_i alpha_i T_i.

How it is computed. A pool of A cells is composited in *rounds*: every cell
takes its next K Gaussians, so a round is a dense [A, K, P] block (P pixels a
cell). The exponent log2(o) + power * log2(e) of a pixel relative to its cell
centre is a quadratic in the pixel's offset, so the whole block is one matrix
product of per-(cell, Gaussian) coefficients [A * K, 6] with fixed pixel
features [6, P], then exp2. Transmittance is a cumulative product over K.
A cell leaves the pool once all its pixels have stopped or its list is done,
and a waiting cell takes its slot, so blocks keep a cache-sized shape and no
pixels x Gaussians matrix of the whole image ever exists.

The backward pass replays the recorded rounds front to back, recomputing
alpha and transmittance instead of storing them; the suffix sums that the
gradient of alpha needs are the forward's totals minus a running prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from cgsgan.render.projection import ALPHA_MIN
from cgsgan.render.tiles import TileLists

ALPHA_MAX = 0.99
T_MIN = 1e-4  # stop before transmittance falls below this
LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
_E_MIN = -20.0  # exp2(-20) < 1/255: clamping there avoids denormals and changes nothing
_E_MAX = math.log2(ALPHA_MAX)
_PAD_LOG2_OPACITY = -1000.0  # the padding entry has alpha 0
CHANNELS = 4  # r, g, b, depth
DEFAULT_BUDGET = 1 << 20  # elements of one round's block: 4 MB in float32, cache-sized


@dataclass
class Step:
    """One recorded round, and how the pool changes after it."""

    cells: Tensor  # [A] cell in each slot
    start: Tensor  # [A] list index of the slot's first entry in this round
    end: Tensor  # [A] list index past the slot's last entry
    width: int  # K
    refill_slots: Tensor | None = None  # slots that take a waiting cell after this round
    refill_cells: Tensor | None = None
    keep: Tensor | None = None  # slots kept once no cell is waiting


def _pixel_features(cell: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[6, P] features (qx^2, qx qy, qy^2, qx, qy, 1) of each pixel's offset from its cell centre."""
    r = torch.arange(cell, dtype=dtype, device=device) - (cell - 1) / 2
    qy, qx = torch.meshgrid(r, r, indexing="ij")
    qx, qy = qx.flatten(), qy.flatten()
    return torch.stack([qx * qx, qx * qy, qy * qy, qx, qy, torch.ones_like(qx)])


def _entry_ids(ids: Tensor, start: Tensor, end: Tensor, width: int) -> Tensor:
    """Gaussian ids [A * K] of the list entries start .. start + K of each slot; the padding id at or past end.

    ids: the lists' gaussian_ids with the padding id appended.
    """
    index = start.unsqueeze(1) + torch.arange(width, device=start.device)
    index = torch.where(index < end.unsqueeze(1), index, ids.numel() - 1)
    return ids.index_select(0, index.view(-1))


def _coefficients(rows: Tensor, lists: TileLists, cells: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exponent coefficients psi [6, A * K] and the offsets mx, my [A * K] from the cell centres.

    rows: [A * K, >= 6] (x, y, a, b, c, log2 opacity, ...). The base-2 exponent of a pixel at offset q
    from its cell centre is phi(q) . psi, with phi = (qx^2, qx qy, qy^2, qx, qy, 1).
    """
    local = cells % lists.cells_per_image
    half = (lists.cell - 1) / 2
    k = rows.shape[0] // cells.numel()
    cx = (local % lists.cells_x).to(rows.dtype).mul_(lists.cell).add_(half).repeat_interleave(k)
    cy = torch.div(local, lists.cells_x, rounding_mode="floor").to(rows.dtype).mul_(lists.cell).add_(half)
    x, y, a, b, c, log2_o = rows[:, :6].unbind(-1)
    mx, my = x - cx, y - cy.repeat_interleave(k)
    ax_by, bx_cy = a * mx + b * my, b * mx + c * my
    const = (mx * ax_by + my * bx_cy).mul_(-0.5 * LOG2E).add_(log2_o)
    psi = torch.stack([a * (-0.5 * LOG2E), b * -LOG2E, c * (-0.5 * LOG2E), ax_by * LOG2E, bx_cy * LOG2E, const])
    return psi, mx, my


def _alpha(psi: Tensor, phi_t: Tensor, slots: int, with_cap: bool = False) -> tuple[Tensor, Tensor | None]:
    """alpha [A, P, K] and, if asked, where the 0.99 cap binds.

    One matrix product [P, 6] x [6, A * K] gives the exponents; the result is laid out [P, A, K]
    and returned as an [A, P, K] view (K stays contiguous, which the scans over K want).
    """
    exponent = (phi_t @ psi).clamp_(_E_MIN, _E_MAX)
    capped = exponent >= _E_MAX if with_cap else None
    alpha = F.threshold_(exponent.exp2_(), ALPHA_MIN, 0.0)
    view = alpha.view(phi_t.shape[0], slots, -1).transpose(0, 1)
    return view, None if capped is None else capped.view_as(alpha).view(phi_t.shape[0], slots, -1).transpose(0, 1)


def _transmittance(alpha: Tensor, t_in: Tensor) -> Tensor:
    """[A, P, K + 1]: entry k is the transmittance before entry k, the last one after all K."""
    a, p, k = alpha.shape
    buf = torch.empty(a, p, k + 1, dtype=alpha.dtype, device=alpha.device)
    buf[..., 0] = t_in
    torch.sub(alpha.new_ones(()), alpha, out=buf[..., 1:])
    return buf.cumprod_(dim=-1)


def _in_image(lists: TileLists, batch: int, height: int, width: int, dtype, device) -> Tensor:
    """[B * C, P] 1 for pixels inside the image, 0 in the padding of partial cells."""
    n = lists.cell
    ys = torch.arange(lists.cells_y * n, device=device) < height
    xs = torch.arange(lists.cells_x * n, device=device) < width
    mask = (ys[:, None] & xs[None, :]).to(dtype)
    mask = mask.reshape(lists.cells_y, n, lists.cells_x, n).permute(0, 2, 1, 3).reshape(-1, n * n)
    return mask.repeat(batch, 1)


def to_image(cells: Tensor, batch: int, lists: TileLists, height: int, width: int) -> Tensor:
    """[B * C, ch, P] per-cell pixels -> [B, ch, H, W]."""
    n, ch = lists.cell, cells.shape[1]
    img = cells.reshape(batch, lists.cells_y, lists.cells_x, ch, n, n)
    img = img.permute(0, 3, 1, 4, 2, 5).reshape(batch, ch, lists.cells_y * n, lists.cells_x * n)
    return img[:, :, :height, :width]


def to_cells(image: Tensor, lists: TileLists) -> Tensor:
    """[B, ch, H, W] -> [B * C, ch, P] (zeros in the padding of partial cells)."""
    b, ch, h, w = image.shape
    n = lists.cell
    image = F.pad(image, (0, lists.cells_x * n - w, 0, lists.cells_y * n - h))
    img = image.reshape(b, ch, lists.cells_y, n, lists.cells_x, n)
    return img.permute(0, 2, 4, 1, 3, 5).reshape(-1, ch, n * n)


def _round_width(active: int, pixels: int, budget: int) -> int:
    """Entries per cell in a round: 32, more once the pool drains, keeping A * K * P near the budget."""
    width = 32
    while width < 512 and active * pixels * width * 2 <= budget:
        width *= 2
    return width


def _advance(step: Step, state: dict[str, Tensor], fresh: Callable[[Tensor], dict[str, Tensor]]) -> dict:
    """Apply a step's pool change to per-slot state tensors (the same in both passes)."""
    if step.refill_slots is not None:
        new = fresh(step.refill_cells)
        for name, value in state.items():
            value.index_copy_(0, step.refill_slots, new[name])
    if step.keep is not None:
        state = {name: value.index_select(0, step.keep) for name, value in state.items()}
    return state


def _round_inputs(lists, ids, table, cells, start, end, width):
    """Entry ids [A * K], their table rows [A * K, 10], psi [6, A * K], mx, my [A * K]."""
    entry = _entry_ids(ids, start, end, width)
    rows = table.index_select(0, entry)
    psi, mx, my = _coefficients(rows, lists, cells)
    return entry, rows, psi, mx, my


def _features(rows: Tensor, slots: int) -> Tensor:
    """(r, g, b, depth) of the round's entries as [A, 4, K]."""
    return rows[:, 6:].reshape(slots, -1, CHANNELS).transpose(1, 2)


class _Pool:
    """The cells being composited: one slot each, with the list range still to do."""

    def __init__(self, lists: TileLists, budget: int):
        pixels = lists.cell**2
        # Longest lists first, so the last rounds are not spent on one long straggler.
        order = torch.argsort(lists.counts, descending=True, stable=True)
        self.waiting = order[: int((lists.counts > 0).sum())]
        self.lists, self.budget, self.pixels = lists, budget, pixels
        size = max(1, budget // (pixels * 32))
        self.cells, self.waiting = self.waiting[:size], self.waiting[size:]
        self.start = lists.offsets.index_select(0, self.cells)
        self.end = self.start + lists.counts.index_select(0, self.cells)

    def step(self) -> Step:
        return Step(self.cells, self.start, self.end, _round_width(self.cells.numel(), self.pixels, self.budget))

    def advance(self, step: Step, finished: Tensor) -> Tensor:
        """Move past a round; finished [A] slots are refilled or dropped. Returns their indices."""
        self.start = self.start + step.width
        done = finished.nonzero().squeeze(1)
        if not done.numel():
            return done
        cells, start, end = self.cells.clone(), self.start.clone(), self.end.clone()
        refill = min(done.numel(), self.waiting.numel())
        if refill:
            step.refill_slots, step.refill_cells = done[:refill], self.waiting[:refill]
            self.waiting = self.waiting[refill:]
            cells[step.refill_slots] = step.refill_cells
            start[step.refill_slots] = self.lists.offsets.index_select(0, step.refill_cells)
            end[step.refill_slots] = start[step.refill_slots] + self.lists.counts.index_select(0, step.refill_cells)
        if refill < done.numel():
            kept = torch.ones_like(finished)
            kept[done[refill:]] = False
            step.keep = kept.nonzero().squeeze(1)
            cells, start, end = cells[step.keep], start[step.keep], end[step.keep]
        self.cells, self.start, self.end = cells, start, end
        return done


def composite_forward(table, lists: TileLists, batch: int, height: int, width: int, budget: int):
    """Accumulated (r, g, b, depth) [B * C, 4, P], final transmittance [B * C, P] and the steps.

    table: [N + 1, 10] (x, y, a, b, c, log2 opacity, r, g, b, depth) ending with the padding row.
    """
    device, dtype = table.device, table.dtype
    pixels = lists.cell**2
    phi_t = _pixel_features(lists.cell, dtype, device).t().contiguous()
    in_image = _in_image(lists, batch, height, width, dtype, device)
    ids = torch.cat([lists.gaussian_ids, lists.gaussian_ids.new_full((1,), table.shape[0] - 1)])
    out_acc = torch.zeros(in_image.shape[0], CHANNELS, pixels, dtype=dtype, device=device)
    out_trans = in_image.clone()  # cells without Gaussians stay transparent
    pool = _Pool(lists, budget)

    def fresh(cells: Tensor) -> dict[str, Tensor]:
        t = in_image.index_select(0, cells)  # padding pixels of partial cells start stopped
        zeros = torch.zeros(cells.numel(), CHANNELS, pixels, dtype=dtype, device=device)
        return dict(t_run=t, t_stop=t.clone(), acc=zeros)

    state = fresh(pool.cells)
    steps: list[Step] = []
    while pool.cells.numel():
        step = pool.step()
        steps.append(step)
        slots = step.cells.numel()
        _, rows, psi, _, _ = _round_inputs(lists, ids, table, step.cells, step.start, step.end, step.width)
        alpha, _ = _alpha(psi, phi_t, slots)
        t_run = state["t_run"]  # transmittance of pixels still compositing, 0 for stopped ones
        cum = _transmittance(alpha, t_run)
        weights = torch.sub(cum[..., :-1], cum[..., 1:])  # alpha_k T_k = T_k - T_k+1
        t_last = cum[..., -1]
        going = t_last >= T_MIN
        stop = ((t_run > 0) & ~going).view(-1).nonzero().squeeze(1)
        if stop.numel():  # pixels that stop inside this round: drop their entries after the stop
            rows_t = cum.view(-1, step.width + 1).index_select(0, stop)
            valid = rows_t[:, 1:] >= T_MIN
            flat_w = weights.view(-1, step.width)
            flat_w.index_copy_(0, stop, flat_w.index_select(0, stop) * valid)
            state["t_stop"].view(-1).index_copy_(0, stop, rows_t.gather(1, valid.sum(1, keepdim=True)).squeeze(1))
        state["t_run"] = torch.where(going, t_last, torch.zeros_like(t_last))
        state["acc"].baddbmm_(_features(rows, slots), weights.transpose(1, 2))

        finished = (pool.start + step.width >= pool.end) | ~going.any(1)
        done = pool.advance(step, finished)
        if done.numel():
            cells = step.cells.index_select(0, done)
            t = state["t_run"].index_select(0, done)
            t = torch.where(t > 0, t, state["t_stop"].index_select(0, done))
            out_acc.index_copy_(0, cells, state["acc"].index_select(0, done))
            out_trans.index_copy_(0, cells, t)
            state = _advance(step, state, fresh)
    return out_acc, out_trans, steps


def _geo_grad(grad_psi: Tensor, rows: Tensor, mx: Tensor, my: Tensor) -> Tensor:
    """Chain rule from psi [6, A * K] (gradient per unit base-2 exponent) to (x, y, a, b, c, log2 o)."""
    d0, d1, d2, d3, d4, d5 = (grad_psi * LOG2E).unbind(0)
    a, b, c = rows[:, 2], rows[:, 3], rows[:, 4]
    ax_by, bx_cy = a * mx + b * my, b * mx + c * my
    grads = [
        a * d3 + b * d4 - ax_by * d5,
        b * d3 + c * d4 - bx_cy * d5,
        mx * d3 - 0.5 * (d0 + mx * mx * d5),
        my * d3 + mx * d4 - mx * my * d5 - d1,
        my * d4 - 0.5 * (d2 + my * my * d5),
        grad_psi[5],
    ]
    return torch.stack(grads)


def composite_backward(table, lists, steps, out_acc, out_trans, grad_acc, grad_trans, in_image) -> Tensor:
    """Gradient [10, N + 1] of the table's columns from those of the per-cell outputs."""
    device, dtype = table.device, table.dtype
    phi = _pixel_features(lists.cell, dtype, device)
    phi_t = phi.t().contiguous()
    pixels = phi.shape[1]
    ids = torch.cat([lists.gaussian_ids, lists.gaussian_ids.new_full((1,), table.shape[0] - 1)])
    grads = torch.zeros(6 + CHANNELS, table.shape[0], dtype=dtype, device=device)
    may_cap = bool((table[:, 5] >= _E_MAX).any())
    # Per pixel: sum_j w_j (g . f_j) + T_final g_T, the total every suffix sum is taken from.
    total = (grad_acc * out_acc).sum(1) + grad_trans * out_trans

    def fresh(cells: Tensor) -> dict[str, Tensor]:
        t = in_image.index_select(0, cells)
        return dict(
            t_run=t, prefix=torch.zeros_like(t),
            go=grad_acc.index_select(0, cells), total=total.index_select(0, cells),
        )  # fmt: skip

    state = fresh(steps[0].cells) if steps else {}
    for step in steps:
        slots, k = step.cells.numel(), step.width
        entry, rows, psi, mx, my = _round_inputs(lists, ids, table, step.cells, step.start, step.end, k)
        alpha, capped = _alpha(psi, phi_t, slots, may_cap)
        t_run, go, feats = state["t_run"], state["go"], _features(rows, slots)
        cum = _transmittance(alpha, t_run)
        t_before, t_after = cum[..., :-1], cum[..., 1:]
        skipped = t_after < T_MIN  # entries a pixel did not composite: after its stop, or all once stopped
        weights = torch.sub(t_before, t_after).masked_fill_(skipped, 0.0)
        g_dot_f = torch.bmm(go.transpose(1, 2), feats)  # [A, P, K]
        grad_feat = torch.bmm(go, weights)  # [A, 4, K]
        running = weights.mul_(g_dot_f).cumsum_(-1).add_(state["prefix"].unsqueeze(-1))
        prefix = running[..., -1].clone()
        suffix = torch.sub(state["total"].unsqueeze(-1), running, out=running)  # later entries + T_final g_T
        # d/d alpha_k = T_k g.f_k - suffix_k / (1 - alpha_k) = T_k (g.f_k - suffix_k / T_k+1)
        grad_alpha = g_dot_f.sub_(suffix.div_(t_after)).mul_(t_before).masked_fill_(skipped, 0.0)
        if capped is not None:
            grad_alpha.masked_fill_(capped, 0.0)
        grad_exp = torch.empty(pixels, slots, k, dtype=dtype, device=device)  # the exponents' layout
        torch.mul(grad_alpha, alpha, out=grad_exp.transpose(0, 1))
        grad_psi = (phi @ grad_exp.view(pixels, -1)).mul_(LN2)  # [6, A * K]
        grads[:6].index_add_(1, entry, _geo_grad(grad_psi, rows, mx, my))
        grads[6:].index_add_(1, entry, grad_feat.transpose(0, 1).reshape(CHANNELS, -1))

        t_last = cum[..., -1]
        state["t_run"] = torch.where(t_last >= T_MIN, t_last, torch.zeros_like(t_last))
        state["prefix"] = prefix
        state = _advance(step, state, fresh)
    return grads


def _pad_row(table: Tensor, column: int, value: float) -> Tensor:
    row = table.new_zeros(1, table.shape[1])
    row[0, column] = value
    return torch.cat([table, row])


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, lists, batch, height, width, budget):
        table = _pad_row(table, 5, _PAD_LOG2_OPACITY)
        acc, trans, steps = composite_forward(table, lists, batch, height, width, budget)
        ctx.save_for_backward(table, acc, trans)
        ctx.lists, ctx.steps, ctx.shape = lists, steps, (batch, height, width)
        color = to_image(acc, batch, lists, height, width)
        t_img = to_image(trans.unsqueeze(1), batch, lists, height, width)
        return color, t_img

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_color, grad_t):
        table, acc, trans = ctx.saved_tensors
        lists, (batch, height, width) = ctx.lists, ctx.shape
        in_image = _in_image(lists, batch, height, width, table.dtype, table.device)
        grads = composite_backward(
            table, lists, ctx.steps, acc, trans,
            to_cells(grad_color, lists), to_cells(grad_t, lists).squeeze(1), in_image,
        )  # fmt: skip
        return grads[:, :-1].t(), None, None, None, None, None


def composite(
    table: Tensor, lists: TileLists, batch: int, height: int, width: int, budget: int = DEFAULT_BUDGET
) -> tuple[Tensor, Tensor]:
    """Composite cell lists front to back.

    table: [B * N, 10] per Gaussian: screen position x, y; inverse 2D covariance a, b, c; log2
    opacity; then the accumulated features r, g, b, depth.
    Returns sum f_i alpha_i T_i as [B, 4, H, W] and the final transmittance [B, 1, H, W].
    budget: elements of one round's [A, P, K] block; bounds memory and keeps rounds in cache.
    """
    return _Composite.apply(table, lists, batch, height, width, budget)
