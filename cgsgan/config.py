"""Network configurations as dataclasses, and the named presets.

Every default is documented here once. The official presets (``ffhqc256`` ...
``ffhqc2048``) build the networks of the released CGS-GAN checkpoints; the
CPU presets (``tiny64``, ``small128``) change only widths, point count and
number of levels, so they run the same code on small machines.

Two official generator revisions exist and both load: ``v1`` (one w shared by
every transformer block) and ``v2`` (one w per block; the level-7 feature
width is 8 instead of 16, which matters at 2048 only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

UPSAMPLE_RATIOS = (1, 4, 4, 4, 2, 2, 2, 2)  # children per parent, level by level
REVISIONS = ("v1", "v2")


@dataclass(frozen=True)
class GeneratorConfig:
    """The CGS-GAN generator: mapping network, point transformer and Gaussian hierarchy."""

    resolution: int = 512  # training image size; sets the scale schedule
    revision: str = "v2"  # "v1" or "v2", see the module docstring
    levels: int | None = None  # hierarchy levels = transformer outputs; None: log2(resolution) - 3
    num_points: int = 512  # tokens of the learnable point cloud
    width: int = 512  # transformer width (tokens' channels)
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 25  # camera label size; the mapping only ever sees zeros (unconditional G)
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    heads: int = 8
    mlp_ratio: int = 4
    first_blocks: int = 6  # blocks before the level-0 output; one more block per further level
    pe_dim: int = 256  # channels of each of the two positional encodings (Fourier, constant)
    pe_res: int = 512  # length of the constant-PE lines
    min_feature_width: int = 16  # floor of the per-level feature width

    def __post_init__(self) -> None:
        if self.revision not in REVISIONS:
            raise ValueError(f"revision must be one of {REVISIONS}, got {self.revision!r}")
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 16, got {self.resolution}")
        if not 2 <= self.num_levels <= len(UPSAMPLE_RATIOS):
            raise ValueError(f"levels must be in 2..{len(UPSAMPLE_RATIOS)}, got {self.num_levels}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.pe_dim * 2 != self.width:
            raise ValueError(f"width ({self.width}) must be 2 * pe_dim ({self.pe_dim})")
        for name in ("num_points", "z_dim", "w_dim", "mapping_layers", "first_blocks", "pe_res"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    # ------------------------------------------------------------ derived sizes
    @property
    def num_levels(self) -> int:
        return self.levels if self.levels is not None else int(math.log2(self.resolution)) - 3

    @property
    def num_blocks(self) -> int:
        return self.first_blocks + self.num_levels - 1

    @property
    def num_ws(self) -> int:
        """Rows of ws: v1 shares one w, v2 feeds block j with ws[:, j] (all rows equal)."""
        return 1 if self.revision == "v1" else self.num_blocks

    @property
    def ratios(self) -> tuple[int, ...]:
        return UPSAMPLE_RATIOS[: self.num_levels]

    @property
    def cumulative_ratios(self) -> tuple[int, ...]:
        return tuple(math.prod(self.ratios[: i + 1]) for i in range(self.num_levels))

    @property
    def feature_widths(self) -> tuple[int, ...]:
        widths = [max(self.min_feature_width, self.width >> i) for i in range(self.num_levels)]
        if self.revision == "v2" and self.num_levels == 8:
            widths[7] = 8
        return tuple(widths)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Gaussians per sample at each level (level 0 first)."""
        return tuple(self.num_points * r for r in self.cumulative_ratios)

    @property
    def num_gaussians(self) -> int:
        return sum(self.level_sizes)

    @property
    def num_anchors(self) -> int:
        return sum(self.level_sizes[:-1])

    # ----------------------------------------------------- the scale schedule
    @property
    def scale_init(self) -> float:
        """Log of the coarsest scale, ln(0.5 / sqrt(num_points)): also the level-0 anchors' upper bound."""
        return math.log(0.5 / math.sqrt(self.num_points))

    @property
    def min_scale(self) -> float:
        """0.5 / R: a parent larger than this splits (its children shrink by split_ratio)."""
        return 0.5 / self.resolution

    @property
    def split_ratio(self) -> float:
        # The official schedule divides by (number of upsamplings - 1) = log2(R) - 4.
        steps = max(int(math.log2(self.resolution)) - 4, 1)
        return math.exp((self.scale_init - math.log(self.min_scale)) / steps)

    # ------------------------------------------------------------- plumbing
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown generator config keys: {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The camera-conditioned StyleGAN2 discriminator (EG3D's resnet variant)."""

    resolution: int = 512
    c_dim: int = 25
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4  # blocks at the highest resolutions run in float16 on CUDA
    conv_clamp: float | None = 256.0
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    mapping_layers: int = 8

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(int(math.log2(self.resolution)), 2, -1)]


@dataclass(frozen=True)
class Preset:
    """A named network configuration and what it is for."""

    name: str
    generator: GeneratorConfig
    description: str
    tags: tuple[str, ...] = field(default=())
    discriminator: DiscriminatorConfig | None = None  # None: the official one at the generator's resolution
    training: dict[str, Any] = field(default_factory=dict)  # TrainConfig defaults that differ from the reference

    def discriminator_config(self) -> DiscriminatorConfig:
        return self.discriminator or DiscriminatorConfig(resolution=self.generator.resolution)


def _official(resolution: int) -> Preset:
    return Preset(
        name=f"ffhqc{resolution}",
        generator=GeneratorConfig(resolution=resolution),
        description=f"official CGS-GAN at {resolution}^2",
        tags=("official",),
        training=dict(metrics=("fid20k_full",)),  # the reference measures it at every snapshot
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        *(_official(r) for r in (256, 512, 1024, 2048)),
        Preset(
            "tiny64",
            GeneratorConfig(resolution=64, num_points=256, width=128, z_dim=128, w_dim=128, pe_dim=64),
            "CPU-sized: 64^2, 5,376 Gaussians, width 128",
            ("cpu",),
            DiscriminatorConfig(resolution=64, channel_base=4096, channel_max=256),
            # An hour on two cores is ~10 kimg: the D-input blur fades over 4 kimg (at batch 8) instead of 50,
            # and starts at 2 px, which blurs a 64^2 head as 10 px blurs a 320^2 one. No metrics at snapshots
            # (the official presets' fid20k_full): on two cores the Inception network takes ~0.2 s an image.
            dict(kimg=10, blur_sigma=2.0, blur_fade_kimg=16, tick_kimg=0.25, snapshot_ticks=4, image_ticks=4),
        ),
        Preset(
            "small128",
            GeneratorConfig(resolution=128, num_points=256, width=256, z_dim=256, w_dim=256, pe_dim=128),
            "CPU-sized: 128^2, 21,760 Gaussians, width 256",
            ("cpu",),
            DiscriminatorConfig(resolution=128, channel_base=8192, channel_max=256),
            dict(kimg=20, blur_sigma=4.0, blur_fade_kimg=32, tick_kimg=0.5, snapshot_ticks=4, image_ticks=4),
        ),
    )
}


def generator_config(preset: str, **overrides: Any) -> GeneratorConfig:
    """A preset's generator config with fields replaced, e.g. ``generator_config("ffhqc512", revision="v1")``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset].generator, **overrides)


def find_preset(cfg: GeneratorConfig) -> str | None:
    """The preset whose generator this config is (in either revision), or None."""
    return next((name for name, p in PRESETS.items() if replace(p.generator, revision=cfg.revision) == cfg), None)
