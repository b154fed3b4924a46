"""Data: the dataset format and loader, its checks, and built-in scenes that need no download.

See :mod:`cgsgan.data.dataset` (loader, samplers), :mod:`cgsgan.data.catalog`
(layout and checks) and :mod:`cgsgan.data.demo_scene` (a procedural demo head).
"""

from cgsgan.data.catalog import DatasetError, Problem, read_distribution, scan
from cgsgan.data.dataset import HeadsDataset, InfiniteSampler, LabelSampler
from cgsgan.data.demo_scene import demo_head

__all__ = [
    "DatasetError",
    "HeadsDataset",
    "InfiniteSampler",
    "LabelSampler",
    "Problem",
    "demo_head",
    "read_distribution",
    "scan",
]
