"""Building blocks shared by the networks: equalised-lr layers and the mapping network."""

from cgsgan.nn.layers import FullyConnectedLayer, lrelu, normalize_2nd_moment
from cgsgan.nn.mapping import MappingNetwork

__all__ = ["FullyConnectedLayer", "MappingNetwork", "lrelu", "normalize_2nd_moment"]
