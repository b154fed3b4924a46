"""Equalised-learning-rate layers of StyleGAN2 (fully connected and convolutional), as the CGS-GAN networks use them.

The stored weight of a fully connected layer is ``N(0, 1) * weight_init / lr_multiplier``
and it is rescaled at run time by ``lr_multiplier / sqrt(fan_in)``; the stored bias
is ``bias_init / lr_multiplier``, rescaled by ``lr_multiplier``. So Adam sees
parameters of unit scale, and ``lr_multiplier`` slows a layer down (0.01 in the
mapping network). Parameter names (``weight``, ``bias``) match the official
checkpoints.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cgsgan.nn.resample import conv2d_resample, setup_filter

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky ReLU
ACTIVATIONS = ("linear", "lrelu")


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale x to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2), StyleGAN2's ``lrelu`` activation."""
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer on inputs [..., in_features] -> [..., out_features]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init: float | np.ndarray = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        if bias:
            init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
            self.bias = nn.Parameter(torch.from_numpy(init / lr_multiplier))
        else:
            self.register_parameter("bias", None)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor, gain: float = 1.0, scale: float = 1.0) -> Tensor:
        """act(FC(x * gain)) * scale, for positive gain and scale.

        The factors ride on addmm's alpha and beta, so the weights are never rescaled in
        memory; lrelu's sqrt(2) and ``scale`` join them since leaky ReLU commutes with
        positive factors.
        """
        out_gain = scale * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        alpha = self.weight_gain * gain * out_gain
        flat = x.reshape(-1, x.shape[-1])
        if self.bias is None:
            y = torch.mm(flat, self.weight.t()) * alpha
        else:
            y = torch.addmm(self.bias, flat, self.weight.t(), beta=self.bias_gain * out_gain, alpha=alpha)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return F.leaky_relu(y, LRELU_SLOPE) if self.activation == "lrelu" else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def bias_act(x: Tensor, bias: Tensor | None, activation: str, gain: float, clamp: float | None) -> Tensor:
    """StyleGAN2's bias_act on NCHW maps: add the bias, activate, scale by gain, clamp to +-clamp."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


class Conv2dLayer(nn.Module):
    """Equalised-lr 2D convolution with optional anti-aliased 2x down-sampling and output clamping.

    Weight [out, in, k, k] ~ N(0, 1), used at 1 / sqrt(in k^2); ``resample_filter`` is a
    buffer as in the official checkpoints (only layers that down-sample use it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if down not in (1, 2):
            raise ValueError(f"down must be 1 or 2, got {down}")
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, weight, self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, self.act_gain * gain, clamp)
