"""Batched 3D Gaussian scenes in the 3DGS storage convention.

Every field is kept *pre-activation*, exactly as 3DGS checkpoints, PLY files
and the CGS-GAN generator store them; the renderer applies the activations:

    xyz       [B, N, 3]  world position (y up, the face looks toward +z)
    scale     [B, N, 3]  log of the per-axis standard deviation   -> exp
    rotation  [B, N, 4]  unnormalised quaternion (w, x, y, z)     -> L2-normalise
    opacity   [B, N, 1]  logit                                    -> sigmoid
    color     [B, N, 3]  spherical-harmonics degree-0 coefficient -> 0.5 + C0 * color
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Degree-0 SH coefficient that renders as ``rgb``."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(color: Tensor) -> Tensor:
    """Colour of a degree-0 SH coefficient, clamped at 0 (not above), as 3DGS does."""
    return (0.5 + SH_C0 * color).clamp_min(0.0)


def rotation_matrices(quats: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] of unit quaternions (w, x, y, z) [..., 4]."""
    w, x, y, z = quats.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def covariances(scales: Tensor, quats: Tensor) -> Tensor:
    """Covariances R diag(s^2) R^T [..., 3, 3] of standard deviations [..., 3] and unit quaternions [..., 4]."""
    rot = rotation_matrices(quats)
    return (rot * scales.square().unsqueeze(-2)) @ rot.transpose(-1, -2)


@dataclass
class GaussianScene:
    """B scenes of N Gaussians each; see the module docstring for the fields."""

    xyz: Tensor
    scale: Tensor
    rotation: Tensor
    opacity: Tensor
    color: Tensor

    WIDTHS: ClassVar[dict[str, int]] = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1, "color": 3}

    def __post_init__(self) -> None:
        ref = self.xyz
        for name, width in self.WIDTHS.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"GaussianScene.{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.dim() != 3 or value.shape[-1] != width:
                raise ValueError(f"GaussianScene.{name} must have shape [B, N, {width}], got {list(value.shape)}")
            if value.shape[:2] != ref.shape[:2]:
                raise ValueError(
                    f"GaussianScene.{name} has batch/count {list(value.shape[:2])}, but xyz has {list(ref.shape[:2])}"
                )
            if value.device != ref.device or value.dtype != ref.dtype:
                raise ValueError(
                    f"GaussianScene.{name} is {value.dtype} on {value.device}, but xyz is {ref.dtype} on {ref.device}"
                )
            if not value.is_floating_point():
                raise ValueError(f"GaussianScene.{name} must be a floating tensor, got {value.dtype}")

    # ------------------------------------------------------------------ basics
    @property
    def batch_size(self) -> int:
        return self.xyz.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.xyz.shape[1]

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    @property
    def dtype(self) -> torch.dtype:
        return self.xyz.dtype

    def __len__(self) -> int:
        return self.batch_size

    def tensors(self) -> dict[str, Tensor]:
        """The five fields by name, in storage order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def map(self, fn: Callable[[Tensor], Tensor]) -> GaussianScene:
        """A new scene with ``fn`` applied to every field."""
        return GaussianScene(**{name: fn(value) for name, value in self.tensors().items()})

    def to(self, *args, **kwargs) -> GaussianScene:
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> GaussianScene:
        return self.map(Tensor.detach)

    def clone(self) -> GaussianScene:
        return self.map(Tensor.clone)

    def requires_grad_(self, requires_grad: bool = True) -> GaussianScene:
        for value in self.tensors().values():
            value.requires_grad_(requires_grad)
        return self

    # ------------------------------------------------------------- activations
    def scales(self) -> Tensor:
        """Standard deviations along the local axes [B, N, 3]."""
        return self.scale.exp()

    def rotations(self) -> Tensor:
        """Unit quaternions (w, x, y, z) [B, N, 4]."""
        return torch.nn.functional.normalize(self.rotation, dim=-1)

    def covariances(self) -> Tensor:
        """World-space covariances R diag(s^2) R^T [B, N, 3, 3]."""
        return covariances(self.scales(), self.rotations())

    def opacities(self) -> Tensor:
        """Opacities in (0, 1) [B, N, 1]."""
        return self.opacity.sigmoid()

    def rgb(self) -> Tensor:
        """View-independent colours [B, N, 3], clamped at 0 as the rasterizer does."""
        return sh_to_rgb(self.color)

    @classmethod
    def from_activated(
        cls,
        xyz: Tensor,
        scales: Tensor,
        rotations: Tensor,
        opacities: Tensor,
        rgb: Tensor,
    ) -> GaussianScene:
        """Build a scene from activated values (positive scales, opacities in (0, 1), rgb)."""
        eps = torch.finfo(opacities.dtype).eps
        opacities = opacities.clamp(eps, 1 - eps)
        return cls(
            xyz=xyz,
            scale=scales.log(),
            rotation=rotations,
            opacity=torch.logit(opacities),
            color=rgb_to_sh(rgb),
        )

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> GaussianScene:
        """Select samples along the batch; an integer keeps the batch dimension (B = 1)."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(f"sample {index} out of range for a batch of {self.batch_size}")
            index = slice(index, index + 1 if index != -1 else None)
        return self.map(lambda t: t[index])

    def subset(self, index: slice | Tensor) -> GaussianScene:
        """Select Gaussians (the same ones in every sample): a slice, indices or a [N] mask."""
        return self.map(lambda t: t[:, index])

    def repeat_views(self, views: int) -> GaussianScene:
        """Repeat every sample ``views`` times in a row: [B] -> [B * views] (b0, b0, ..., b1, ...)."""
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        return self.map(lambda t: t.repeat_interleave(views, dim=0))

    @staticmethod
    def cat(scenes: Sequence[GaussianScene], dim: int = 0) -> GaussianScene:
        """Concatenate scenes along the batch (dim 0) or the Gaussians (dim 1)."""
        if not scenes:
            raise ValueError("GaussianScene.cat needs at least one scene")
        if dim not in (0, 1):
            raise ValueError(f"dim must be 0 (batch) or 1 (Gaussians), got {dim}")
        names = scenes[0].tensors().keys()
        return GaussianScene(**{n: torch.cat([getattr(s, n) for s in scenes], dim=dim) for n in names})

    def with_fields(self, **changes: Tensor) -> GaussianScene:
        """A copy with some fields replaced (shapes are checked again)."""
        return replace(self, **changes)
