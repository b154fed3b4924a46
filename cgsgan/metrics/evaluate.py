"""Metrics by name (StyleGAN3 style), evaluated on a generator against a dataset, and their result files.

Names: ``fid50k_full``, ``kid50k_full``, ``fid3d_50k_full``, ``fidyaw_50k_full``, with any
number of thousands of fakes (``fid10k_full``, ``kid2k_full``, ...) or, for quick looks,
of fakes (``fid500_full``). ``_full`` compares
with every real image of the set (the distribution file's list, repeats included,
as the reference does; each image once with ``unique``); without it, with a fixed
random N of them (an error if the set has fewer).

- ``fid``: FID of G_ema's fakes (z ~ N(0, I), cameras drawn from the set's labels, white
  background) against the reals.
- ``kid``: KID of the same fakes (mean over 100 subsets of up to 1000; ``_std`` too).
- ``fid3d``: FID3D of the paper: mapping conditioned on the frontal camera, rendering
  from a dataset camera (see :mod:`cgsgan.metrics.fakes`).
- ``fidyaw``: FID by view: per yaw bin (:data:`YAW_BINS`, |yaw| of the camera from the
  frontal view), N fakes rendered from cameras of that bin against that bin's reals.
  Each bin is reported with its real count; a bin with fewer than 2 reals has no value.

Metrics with the same number of fakes and kind of draw share their fakes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cgsgan.camera import camera_yaw_deg
from cgsgan.data import HeadsDataset
from cgsgan.data.catalog import read_distribution
from cgsgan.metrics.distances import frechet_distance, kernel_distance
from cgsgan.metrics.fakes import fake_features
from cgsgan.metrics.inception import InceptionFeatures, load_inception
from cgsgan.metrics.ranks import rank_world
from cgsgan.metrics.reals import real_features, reals_dataset
from cgsgan.models import CGSGenerator
from cgsgan.models.synthesizer import Synthesizer

KINDS = ("fid", "kid", "fid3d", "fidyaw")
_NAME = re.compile(r"^(fid|kid|fid3d_|fidyaw_)([1-9]\d*)(k?)(_full)?$")
YAW_BINS = (("frontal", 0.0, 15.0), ("side", 15.0, 35.0), ("steep", 35.0, 180.0))  # |yaw| in [lo, hi) degrees
REAL_SUBSET_SEED = 0


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name."""

    name: str
    kind: str  # one of KINDS
    fakes: int
    full: bool  # every real of the set; else ``fakes`` of them


def parse_metric(name: str) -> MetricSpec:
    """``fid10k_full`` -> MetricSpec("fid10k_full", "fid", 10000, True); a clear error for anything else."""
    match = _NAME.match(name.strip())
    if match is None:
        raise ValueError(
            f"unknown metric {name!r}: use fidNk_full, kidNk_full, fid3d_Nk_full or fidyaw_Nk_full "
            "(N thousand fakes, e.g. fid50k_full, or N fakes without the k; without _full, as many reals "
            "as fakes instead of all)"
        )
    kind, number, thousands, full = match.groups()
    return MetricSpec(name.strip(), kind.rstrip("_"), int(number) * (1000 if thousands else 1), full is not None)


def parse_metrics(names: str | list[str] | tuple[str, ...]) -> list[MetricSpec]:
    """A comma-separated list (or a sequence) of names; duplicates dropped, order kept."""
    items = names.split(",") if isinstance(names, str) else list(names)
    specs = [parse_metric(n) for n in items if n.strip()]
    if not specs:
        raise ValueError("no metric given")
    return list({s.name: s for s in specs}.values())


class Evaluator:
    """Metrics of generators against one dataset: the reals' features are read (or extracted) once.

    ``data`` must hold images at ``resolution``. Every process of a distributed run
    constructs one and calls it with the same generator; the work is split over them."""

    def __init__(
        self,
        data: str | os.PathLike,
        metrics: str | list[str],
        resolution: int,
        distribution: str | os.PathLike | list[int] | None = None,
        unique: bool = False,
        inception: str | os.PathLike | InceptionFeatures | None = None,
        device: str | torch.device = "cpu",
        batch: int = 16,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        workers: int = 0,
        progress: bool = True,
    ) -> None:
        self.specs = parse_metrics(metrics)
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.resolution, self.unique = resolution, unique
        self.distribution = (
            read_distribution(distribution) if isinstance(distribution, str | os.PathLike) else distribution
        )
        self.device, self.batch, self.seed, self.progress = torch.device(device), batch, seed, progress
        self.cache = dict(cache_dir=cache_dir, use_cache=use_cache, workers=workers)
        # The dataset is checked before anything is extracted: a wrong resolution or distribution fails at once.
        self.dataset = reals_dataset(data)
        if len(self.dataset) == 0:
            raise ValueError(f"dataset {self.dataset.path} has no images")
        if self.dataset.resolution != resolution:
            raise ValueError(
                f"the network renders {resolution}x{resolution} images, but the dataset {self.dataset.path} holds "
                f"{self.dataset.resolution}x{self.dataset.resolution}: use --data at the network's resolution"
            )
        self.positions = self._positions(self.dataset)
        for spec in self.specs:
            self._subset(spec, len(self.positions))  # fewer reals than a metric asks for
        if isinstance(inception, InceptionFeatures):
            self.extractor = inception
        else:
            self.extractor = load_inception(inception, self.device)
        self._reals: tuple[Tensor, Tensor] | None = None  # features [N, F] and labels [N, 25] of the real set

    # ------------------------------------------------------------------ reals
    def reals(self) -> tuple[Tensor, Tensor]:
        """Features [N, 2048] and camera labels [N, 25] of the real set (the distribution's list, or unique)."""
        if self._reals is None:
            dataset, features = real_features(self.dataset, self.extractor, batch=max(self.batch, 32),
                                              progress=self.progress, **self.cache)  # fmt: skip
            entries = dataset.catalog.entries
            labels = torch.tensor([entries[p].label for p in self.positions.tolist()], dtype=torch.float32)
            self._reals = features[torch.from_numpy(self.positions)], labels
        return self._reals

    def _positions(self, dataset: HeadsDataset) -> np.ndarray:
        count = len(dataset.catalog.entries)
        if self.distribution is None:
            return np.arange(count)
        numbers = dataset.catalog.numbers()
        missing = sorted({n for n in self.distribution if n not in numbers})
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ValueError(f"the distribution lists {len(missing)} image number(s) not in {dataset.path}: {shown}")
        positions = np.asarray([numbers[n] for n in self.distribution], dtype=np.int64)
        if len(positions) == 0:
            raise ValueError("the distribution lists no images")
        return np.unique(positions) if self.unique else positions

    # ------------------------------------------------------------------ metrics
    def __call__(self, G: CGSGenerator, truncation_psi: float = 1.0, precision: str = "float32",
                 compile: bool = False) -> list[dict]:  # fmt: skip
        """One result per metric: {"metric", "results": {key: value}, "reals", "fakes", "seconds", ...}.

        ``precision`` and ``compile`` choose G's synthesis path (:class:`Synthesizer`); half
        precision changes the fakes slightly, so compare metrics of one precision only."""
        if G.cfg.resolution != self.resolution:
            raise ValueError(f"the network renders {G.cfg.resolution}x{G.cfg.resolution}, this evaluator "
                             f"compares at {self.resolution}x{self.resolution}")  # fmt: skip
        synthesize = Synthesizer(G, precision, compile)  # checks its options before the reals are read
        real, labels = self.reals()
        fakes: dict[tuple, Tensor] = {}

        def fake(count: int, pool: Tensor, fid3d: bool, tag: str) -> Tensor:
            key = (fid3d, tag)
            if key not in fakes or len(fakes[key]) < count:
                fakes[key] = fake_features(G, pool, count, self.extractor, seed=self.seed,
                                           truncation_psi=truncation_psi, fid3d=fid3d, batch=self.batch,
                                           progress=self.progress, desc=f"fakes {tag}".strip(),
                                           synthesize=synthesize)  # fmt: skip
            return fakes[key][:count]

        # The largest N of each kind of draw first, so smaller ones reuse its prefix. Fakes are rendered from
        # cameras of the whole set (of a yaw bin), whichever reals a metric compares with.
        results = []
        for spec in sorted(self.specs, key=lambda s: -s.fakes):
            started = time.perf_counter()
            chosen = self._subset(spec, len(real))
            entry: dict = {"metric": spec.name, "reals": len(chosen), "fakes": spec.fakes}
            if spec.kind in ("fid", "fid3d"):
                value = frechet_distance(real[chosen], fake(spec.fakes, labels, spec.kind == "fid3d", ""))
                entry["results"] = {spec.name: value}
            elif spec.kind == "kid":
                mean, std = kernel_distance(real[chosen], fake(spec.fakes, labels, False, ""), seed=self.seed)
                entry["results"] = {spec.name: mean, f"{spec.name}_std": std}
            else:
                entry["results"], entry["bins"] = self._by_yaw(spec, real, labels, chosen, fake)
            entry["seconds"] = time.perf_counter() - started
            results.append(entry)
        order = {s.name: i for i, s in enumerate(self.specs)}
        return sorted(results, key=lambda r: order[r["metric"]])

    def _subset(self, spec: MetricSpec, count: int) -> Tensor:
        if spec.full:
            return torch.arange(count)
        if count < spec.fakes:
            raise ValueError(f"{spec.name} compares with {spec.fakes} reals, but the dataset's set has {count}: "
                             f"use {spec.name}_full to compare with all of them")  # fmt: skip
        gen = torch.Generator().manual_seed(REAL_SUBSET_SEED)
        return torch.randperm(count, generator=gen)[: spec.fakes].sort().values

    def _by_yaw(self, spec: MetricSpec, real: Tensor, labels: Tensor, chosen: Tensor, fake) -> tuple[dict, dict]:
        """Per bin: the chosen reals in the bin against fakes rendered from all of the bin's cameras."""
        yaw = camera_yaw_deg(labels).abs()
        picked = torch.zeros(len(labels), dtype=torch.bool)
        picked[chosen] = True
        results, bins = {}, {}
        for name, lo, hi in YAW_BINS:
            in_bin = (yaw >= lo) & ((yaw < hi) | (hi >= 180))  # the last bin includes 180 (behind the head)
            inside = in_bin & picked
            count = int(inside.sum())
            value = None
            if count >= 2:
                value = frechet_distance(real[inside], fake(spec.fakes, labels[in_bin], False, name))
            results[f"{spec.name}_{name}"] = value
            bins[name] = {"yaw_deg": [lo, hi], "reals": count, "fid": value}
        return results, bins


def compute_metrics(G: CGSGenerator, data: str | os.PathLike, metrics: str | list[str],
                    truncation_psi: float = 1.0, precision: str = "float32", compile: bool = False,
                    **options) -> list[dict]:  # fmt: skip
    """Evaluate ``metrics`` of ``G`` against ``data`` (options: see :class:`Evaluator`)."""
    device = options.pop("device", None) or next(G.parameters()).device
    evaluator = Evaluator(data, metrics, G.cfg.resolution, device=device, **options)
    return evaluator(G, truncation_psi, precision=precision, compile=compile)


def append_results(out_dir: str | os.PathLike, results: list[dict], **context) -> list[Path]:
    """Append each result as one JSON line to ``out_dir/metric-<name>.jsonl`` (with ``context``, e.g. the
    network and options, and the time); rank 0 only. Returns the files written."""
    if rank_world()[0] != 0:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    stamp = time.time()
    for result in results:
        path = out_dir / f"metric-{result['metric']}.jsonl"
        line = _finite({**result, **context, "timestamp": stamp})
        with open(path, "a") as f:
            f.write(json.dumps(line, default=_json_default, allow_nan=False) + "\n")
        paths.append(path)
    return paths


def _finite(value):
    """Non-finite floats as None (JSON has no NaN), in nested dicts and lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, os.PathLike):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
