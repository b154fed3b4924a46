"""Building blocks shared by the networks: equalised-lr layers, FIR resampling and the mapping network."""

from cgsgan.nn.layers import Conv2dLayer, FullyConnectedLayer, bias_act, lrelu, normalize_2nd_moment
from cgsgan.nn.mapping import MappingNetwork

__all__ = ["Conv2dLayer", "FullyConnectedLayer", "bias_act", "MappingNetwork", "lrelu", "normalize_2nd_moment"]
