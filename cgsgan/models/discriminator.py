"""The CGS-GAN discriminator: EG3D's resnet StyleGAN2 discriminator, conditioned on the camera by projection.

images [B, 3, R, R] in [-1, 1] and camera labels [B, 25] -> logits [B, 1]:

1. Blocks from R down to 8, each: (1x1 from-RGB in the first) conv 3x3, conv 3x3
   with anti-aliased 2x down-sampling, plus a 1x1 down-sampled skip; the two
   paths summed at sqrt(1/2) each.
2. An 8-layer mapping of the label to ``cmap`` [B, 512].
3. The epilogue at 4x4: minibatch standard deviation (groups of 4, 1 channel),
   conv 3x3, two fully connected layers, and the projection sum(out * cmap) / sqrt(512).

Channels are min(32768 / res, 512). The blocks at the four highest resolutions
run in float16 on CUDA (with outputs clamped to +-256), float32 elsewhere.
Parameter names follow the official checkpoints. The official network also has
a block ``b8_pose`` whose output is discarded; it is left out here and its
weights are ignored when an official state dict is loaded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cgsgan.config import DiscriminatorConfig
from cgsgan.nn import Conv2dLayer, FullyConnectedLayer, MappingNetwork
from cgsgan.nn.resample import setup_filter

DEAD_BLOCK = "b8_pose."
__all__ = ["DEAD_BLOCK", "Discriminator", "DiscriminatorConfig", "minibatch_std"]


class DiscriminatorBlock(nn.Module):
    """x [B, C, r, r] (None in the first block, which reads the image) -> [B, C', r/2, r/2]."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int, use_fp16: bool,
                 conv_clamp: float | None) -> None:  # fmt: skip
        super().__init__()
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter())  # in the official layout; unused by resnet blocks
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor) -> Tensor:
        dtype = torch.float16 if self.use_fp16 and img.device.type == "cuda" else torch.float32
        if x is None:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y.add_(x)


def minibatch_std(x: Tensor, group_size: int, num_channels: int) -> Tensor:
    """Append the standard deviation over groups of samples as ``num_channels`` extra channels."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"batch size {n} must be a multiple of the minibatch-std group size {g}")
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n / g, F]
    y = y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels: int, cmap_dim: int, mbstd_group_size: int, mbstd_num_channels: int,
                 conv_clamp: float | None) -> None:  # fmt: skip
        super().__init__()
        self.group_size, self.num_channels, self.cmap_dim = mbstd_group_size, mbstd_num_channels, cmap_dim
        self.conv = Conv2dLayer(channels + mbstd_num_channels, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, cmap_dim)

    def forward(self, x: Tensor, cmap: Tensor) -> Tensor:
        x = minibatch_std(x.float(), self.group_size, self.num_channels)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)


class Discriminator(nn.Module):
    """images [B, 3, R, R] in [-1, 1], labels [B, 25] -> logits [B, 1]."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fp16_resolution = max(2 ** (int(math.log2(cfg.resolution)) + 1 - cfg.num_fp16_res), 8)
        for res in cfg.block_resolutions:
            block = DiscriminatorBlock(
                in_channels=cfg.channels(res) if res < cfg.resolution else 0,
                tmp_channels=cfg.channels(res),
                out_channels=cfg.channels(res // 2),
                img_channels=cfg.img_channels,
                use_fp16=res >= fp16_resolution,
                conv_clamp=cfg.conv_clamp,
            )
            setattr(self, f"b{res}", block)
        cmap_dim = cfg.channels(4)
        self.mapping = MappingNetwork(0, cfg.c_dim, cmap_dim, None, num_layers=cfg.mapping_layers, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(cfg.channels(4), cmap_dim, cfg.mbstd_group_size, cfg.mbstd_num_channels,
                                        cfg.conv_clamp)  # fmt: skip
        self.register_load_state_dict_pre_hook(_drop_dead_block)

    def blocks(self) -> list[DiscriminatorBlock]:
        return [getattr(self, f"b{res}") for res in self.cfg.block_resolutions]

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        r = self.cfg.resolution
        if images.dim() != 4 or images.shape[1:] != (self.cfg.img_channels, r, r):
            raise ValueError(f"images must have shape [B, {self.cfg.img_channels}, {r}, {r}], got {list(images.shape)}")
        if labels.shape != (images.shape[0], self.cfg.c_dim):
            raise ValueError(f"labels must have shape [{images.shape[0]}, {self.cfg.c_dim}], got {list(labels.shape)}")
        x = None
        for block in self.blocks():
            x = block(x, images)
        return self.b4(x, self.mapping(None, labels))


def _drop_dead_block(module, state_dict, prefix, *args) -> None:
    """Official state dicts carry the never-used ``b8_pose`` block: accept and ignore it."""
    for key in [k for k in state_dict if k.startswith(prefix + DEAD_BLOCK)]:
        del state_dict[key]
