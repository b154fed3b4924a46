"""The CGS-GAN objectives as plain functions of tensors (no optimiser, no loop).

- Adversarial: StyleGAN2's non-saturating logistic loss, softplus(-D(fake)) for G,
  softplus(D(fake)) + softplus(-D(real)) for D, and the lazy R1 penalty on reals.
- Multi-view regularisation: every generated scene is judged from V cameras taken
  from the *other* samples of the batch (view v renders scene b with the camera of
  sample (b - v) mod B), so each rendered batch still shows every identity once
  and a head cannot look right from its own camera only.
- Regularisers on the level-0 anchors: KNN clustering and centring (from GSGAN).
- D-input blur: a Gaussian-like kernel whose sigma fades from 10 px to 0 early in
  training, applied to real and fake images alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


# ------------------------------------------------------------------ adversarial
def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """Per-sample sum of squared gradients of D's logits w.r.t. the (blurred) real images, [B].

    ``real_images`` must require grad and be what D saw; the graph is kept, so the
    penalty can be back-propagated into D.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def r1_loss(real_logits: Tensor, real_images: Tensor, gamma: float = 1.0, interval: int = 16) -> Tensor:
    """Lazy R1: gamma / 2 * mean penalty, times the interval it is applied at (StyleGAN2's gain)."""
    return r1_penalty(real_logits, real_images).mean() * (gamma / 2) * interval


def lazy_adam_hyperparameters(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """StyleGAN2's adjustment for a regulariser run every ``interval`` steps: lr and betas scaled by k / (k + 1)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


# ------------------------------------------------------------------ multi-view
def view_labels(labels: Tensor, view: int) -> Tensor:
    """The cameras of view ``view``: sample b gets the label of sample (b - view) mod B, [B, 25]."""
    return torch.roll(labels, shifts=view, dims=0)


# ------------------------------------------------------------------ anchor regularisers
def knn_loss(anchors: Tensor, k: int = 64) -> Tensor:
    """Mean over anchors of (1 / 3k) sum of squared distances to the k nearest other anchors; anchors [B, N, 3]."""
    n = anchors.shape[1]
    if not 0 < k < n:
        raise ValueError(f"k must be in 1..{n - 1} for {n} anchors, got {k}")
    d2 = torch.cdist(anchors, anchors).square()  # [B, N, N]
    nearest = d2.topk(k + 1, dim=-1, largest=False).values[..., 1:]  # drop the anchor itself
    return nearest.sum(dim=-1).mean() / (3 * k)


def center_loss(anchors: Tensor) -> Tensor:
    """Mean over samples and xyz of each sample's squared anchor centroid; anchors [B, N, 3].

    Per sample, as the reference: heads off-centre in opposite directions do not cancel."""
    return anchors.mean(dim=1).square().mean()


# ------------------------------------------------------------------ blur
def blur_sigma(images_seen: float, fade_images: float, sigma0: float = 10.0) -> float:
    """sigma0 fading linearly to 0 after ``fade_images`` images (200 kimg at batch 32 in the reference)."""
    if fade_images <= 0:
        return 0.0
    return max(0.0, 1.0 - images_seen / fade_images) * sigma0


def blur_images(images: Tensor, sigma: float) -> Tensor:
    """Separable blur with taps 2^(-(x / sigma)^2), x in [-floor(3 sigma), floor(3 sigma)], normalised; [B, C, H, W]."""
    radius = math.floor(sigma * 3)
    if radius <= 0:
        return images
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    taps = torch.exp2(-(x / sigma).square())
    taps = taps / taps.sum()
    channels = images.shape[1]
    horizontal = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    # Zero padding, as the reference's filter2d: the borders fade toward 0 (mid-grey in [-1, 1]).
    images = F.conv2d(images, horizontal, padding=(0, radius), groups=channels)
    return F.conv2d(images, vertical, padding=(radius, 0), groups=channels)
