"""FID and KID between two sets of features, computed by torchmetrics.

Features are extracted once (reals are cached, fakes stream in) and handed to
torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` through a
pass-through feature module, so both metrics and every yaw bin share one
extraction. Statistics are accumulated in float64, as StyleGAN3's metric code does.
Every process of a distributed run already holds all features, so torchmetrics'
own synchronisation is off (it would add each process's copy: a doubled count
changes the covariance's n - 1, and KID would sample duplicates).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

KID_SUBSETS = 100  # StyleGAN3's KID: 100 subsets of at most 1000 samples
KID_SUBSET_SIZE = 1000


def _metrics():
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as e:
        raise ImportError("metrics need torchmetrics: pip install 'cgsgan[metrics]'") from e
    return FrechetInceptionDistance, KernelInceptionDistance


class _Precomputed(nn.Module):
    """The 'feature network' of features already extracted: float64 of its input."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features.to(torch.float64)


def _check(real: Tensor, fake: Tensor, need: int) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, F] with the same F, got {list(real.shape)} and {list(fake.shape)}")
    if len(real) < need or len(fake) < need:
        raise ValueError(f"need at least {need} real and fake feature vectors, got {len(real)} and {len(fake)}")


def frechet_distance(real: Tensor, fake: Tensor, chunk: int = 4096) -> float:
    """FID between features real [N, F] and fake [M, F]: |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^1/2).

    torchmetrics' covariances are unbiased (divided by N - 1); StyleGAN3's, which the reference
    uses, divide by N. The two FIDs differ by O(1/N): about 1e-5 relative at 50k, more for a
    small yaw bin or a fid500."""
    _check(real, fake, 2)
    fid_cls, _ = _metrics()
    metric = fid_cls(feature=_Precomputed(real.shape[1]), sync_on_compute=False)
    for features, is_real in ((real, True), (fake, False)):
        for part in features.split(chunk):
            metric.update(part, real=is_real)
    return float(metric.compute())


def kernel_distance(real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                    seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """KID (mean, std over subsets): the unbiased MMD^2 with the cubic kernel (x.y / F + 1)^3.

    Subsets of min(subset_size, N, M) samples, drawn without replacement within a subset
    from a generator seeded by ``seed`` (torchmetrics draws from the global RNG, which is
    forked and restored around the call)."""
    _check(real, fake, 2)
    _, kid_cls = _metrics()
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features in buffer": that is the point here
        warnings.simplefilter("ignore", UserWarning)
        metric = kid_cls(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, sync_on_compute=False)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
