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
    """Pad x [N, C, H, W] by (left, right, top, bottom), convolve each channel with f [k, k], subsample by down."""
    x = F.pad(x, list(padding))
    channels = x.shape[1]
    weight = f.flip([0, 1]).to(x.dtype)[None, None].expand(channels, 1, -1, -1)
    x = F.conv2d(x, weight, groups=channels)
    return x[:, :, ::down, ::down] if down > 1 else x


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
