"""Data: the dataset format and loader, and its checks.

See :mod:`cgsgan.data.dataset` (loader, samplers) and :mod:`cgsgan.data.catalog`
(layout and checks). The built-in synthetic heads live in :mod:`cgsgan.synthetic`,
which this package does not import.
"""

from cgsgan.data.catalog import DatasetError, Problem, read_distribution, scan
from cgsgan.data.dataset import HeadsDataset, InfiniteSampler, LabelSampler

__all__ = [
    "DatasetError",
    "HeadsDataset",
    "InfiniteSampler",
    "LabelSampler",
    "Problem",
    "read_distribution",
    "scan",
]
