"""Metrics: FID, KID, FID3D and FID by view with the standard Inception network, offline.

See :mod:`cgsgan.metrics.evaluate` (names, :class:`Evaluator`, result files),
:mod:`cgsgan.metrics.inception` (the feature network), :mod:`cgsgan.metrics.reals`
(cached real features), :mod:`cgsgan.metrics.fakes` (how fakes are drawn) and
:mod:`cgsgan.metrics.distances` (FID / KID through torchmetrics).
"""

from cgsgan.metrics.distances import frechet_distance, kernel_distance
from cgsgan.metrics.evaluate import Evaluator, MetricSpec, append_results, compute_metrics, parse_metric, parse_metrics
from cgsgan.metrics.inception import InceptionError, find_inception, load_inception

__all__ = [
    "Evaluator",
    "InceptionError",
    "MetricSpec",
    "append_results",
    "compute_metrics",
    "find_inception",
    "frechet_distance",
    "kernel_distance",
    "load_inception",
    "parse_metric",
    "parse_metrics",
]
