"""FIR filtering and resampling of feature maps in plain PyTorch (StyleGAN2's upfirdn2d, down-sampling part).

StyleGAN2 anti-aliases every 2x down-sampling with a separable FIR filter, by
default [1, 3, 3, 1] (normalised). The filter is a buffer of the layers that use
it, so checkpoints carry it; it is applied as a true convolution (flipped), as
the reference's ``upfirdn2d`` does with ``flip_filter=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

DEFAULT_FILTER = (1, 3, 3, 1)


def setup_filter(taps: Sequence[float] = DEFAULT_FILTER) -> Tensor:
    """The normalised 2D filter [k, k] = outer(taps, taps) / sum^2."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def filter2d(x: Tensor, f: Tensor, padding: Sequence[int], down: int = 1) -> Tensor:
    """Pad x [N, C, H, W] by (left, right, top, bottom), convolve each channel with f [k, k], subsample by down.

    A depthwise convolution, with its gradient written as the transposed depthwise convolution
    (and that one's gradient as this): autograd's own double backward of a grouped convolution
    runs one convolution per channel, which on CUDA made a lazy-R1 step 20x slower than a step.
    """
    weight = f.flip([0, 1]).to(x.dtype)[None, None].expand(x.shape[1], 1, -1, -1)
    return _Filter.apply(x, weight, tuple(padding), down)


def _filter(x: Tensor, weight: Tensor, padding: tuple[int, ...], down: int) -> Tensor:
    return F.conv2d(F.pad(x, list(padding)), weight, stride=down, groups=x.shape[1])


def _filter_transposed(y: Tensor, weight: Tensor, padding: tuple[int, ...], down: int, size: tuple[int, int]) -> Tensor:
    """The adjoint of ``_filter`` for inputs of spatial ``size``: transposed convolution, then crop the padding."""
    left, right, top, bottom = padding
    padded = (size[0] + top + bottom, size[1] + left + right)
    k = weight.shape[-2:]
    extra = [p - ((o - 1) * down + kk) for p, o, kk in zip(padded, y.shape[2:], k, strict=True)]
    x = F.conv_transpose2d(y, weight, stride=down, output_padding=tuple(extra), groups=y.shape[1])
    return x[:, :, top : top + size[0], left : left + size[1]]


class _Filter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, padding, down):
        ctx.save_for_backward(weight)
        ctx.padding, ctx.down, ctx.size = padding, down, tuple(x.shape[2:])
        return _filter(x, weight, padding, down)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return _FilterTransposed.apply(grad, weight, ctx.padding, ctx.down, ctx.size), None, None, None


class _FilterTransposed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, padding, down, size):
        ctx.save_for_backward(weight)
        ctx.padding, ctx.down = padding, down
        return _filter_transposed(y, weight, padding, down, size)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return _Filter.apply(grad, weight, ctx.padding, ctx.down), None, None, None, None


def conv2d_resample(x: Tensor, weight: Tensor, f: Tensor, down: int = 1, padding: int = 0) -> Tensor:
    """conv2d(x, weight) with ``padding``, preceded by the anti-aliasing filter when down-sampling by 2.

    Matches the reference's conv2d_resample for up = 1: a 1x1 kernel filters and
    subsamples, then convolves; a larger kernel filters, then convolves with stride.
    """
    if down == 1:
        return F.conv2d(x, weight, padding=padding)
    taps = f.shape[-1]
    lo, hi = padding + (taps - down + 1) // 2, padding + (taps - down) // 2
    if weight.shape[-1] == 1:
        return F.conv2d(filter2d(x, f, (lo, hi, lo, hi), down=down), weight)
    return F.conv2d(filter2d(x, f, (lo, hi, lo, hi)), weight, stride=down)
