"""Inception features of a dataset's real images, computed once and cached on disk.

Features are stored per catalog entry (each image once); the metrics expand them
to the distribution's list (repeats included) or a yaw bin by indexing, so
neither needs a new extraction. Reals are composited over white and never
flipped, as in the reference's metrics.

The cache file is named by a hash of everything its features depend on: the
dataset's content (:meth:`Catalog.fingerprint`: names, labels, and each image's and
mask's size and modification time, or zip CRC), the resolution, the background, the
feature network (sha256 of its file) and :data:`FEATURES_VERSION` (bumped whenever
extraction changes). Change any of them and the features are computed again. The
file is written atomically, so an interrupted extraction leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor

from cgsgan.atomic import atomic_write
from cgsgan.data import HeadsDataset
from cgsgan.metrics.inception import InceptionFeatures
from cgsgan.metrics.ranks import barrier, from_rank0, gather, rank_world, share

FEATURES_VERSION = 1


def default_cache_dir() -> Path:
    """``<cgsgan cache>/metrics`` ($CGSGAN_CACHE, else $XDG_CACHE_HOME/cgsgan, else ~/.cache/cgsgan)."""
    from cgsgan.data.cache import cache_dir

    return cache_dir() / "metrics"


def reals_key(dataset: HeadsDataset, extractor: InceptionFeatures) -> dict:
    """What the cached features of ``dataset`` depend on."""
    return {
        "version": FEATURES_VERSION,
        "dataset": dataset.catalog.fingerprint(),
        "resolution": dataset.resolution,
        "background": "white",
        "inception": extractor.digest,
    }


def cache_file(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir / f"reals-{digest[:20]}.safetensors"


def _read_cache(path: Path, key: dict, shape: tuple[int, int]) -> Tensor | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            if json.loads((f.metadata() or {}).get("key", "null")) != key:
                return None
            features = f.get_tensor("features")
    except (SafetensorError, OSError, ValueError):
        return None
    return features if tuple(features.shape) == shape else None


def real_features(
    data: str | os.PathLike | HeadsDataset,
    extractor: InceptionFeatures,
    resolution: int | None = None,
    batch: int = 64,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    workers: int = 0,
    progress: bool = True,
) -> tuple[HeadsDataset, Tensor]:
    """The dataset (white background, unflipped, every image once) and its features [entries, 2048] float32 (CPU).

    Read from the cache when it holds them (rank 0 reads and sends them to the others);
    otherwise extracted (split over the processes of a distributed run) and written to the
    cache by rank 0."""
    dataset = data if isinstance(data, HeadsDataset) else reals_dataset(data, resolution)
    if dataset.background != "white" or dataset.xflip:
        raise ValueError("real features are of white-backed, unflipped images: use reals_dataset()")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.path} has no images")
    key = reals_key(dataset, extractor)
    file = cache_file(Path(cache_dir) if cache_dir is not None else default_cache_dir(), key)
    cached, shape = None, (len(dataset), extractor.num_features)
    if use_cache and rank_world()[0] == 0 and file.is_file():
        cached = _read_cache(file, key, shape)
    cached = from_rank0(cached, shape, extractor.device)
    if cached is not None:
        return dataset, cached
    features = _extract(dataset, extractor, batch, workers, progress)
    if use_cache and rank_world()[0] == 0:
        metadata = {"key": json.dumps(key), "dataset_path": str(dataset.path)}
        try:  # best effort: a full disk costs the next run an extraction, not this run (or its other ranks)
            atomic_write(file, lambda f: f.write(save({"features": features.contiguous()}, metadata=metadata)))
        except OSError as e:
            warnings.warn(f"real features not cached ({e})", stacklevel=2)
    barrier()
    return dataset, features


def reals_dataset(path: str | os.PathLike, resolution: int | None = None) -> HeadsDataset:
    """The dataset as the metrics read it: every image once, over white, unflipped (checked up front)."""
    return HeadsDataset(path, resolution=resolution, background="white")


def _extract(dataset: HeadsDataset, extractor: InceptionFeatures, batch: int, workers: int, progress: bool) -> Tensor:
    from tqdm import tqdm

    device = extractor.device
    mine = share(len(dataset))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, mine), batch_size=batch, num_workers=workers, pin_memory=device.type == "cuda"
    )
    parts = []
    with tqdm(total=len(mine), desc="real features", unit="img", disable=not progress, leave=False) as bar:
        for items in loader:
            with torch.no_grad():
                parts.append(extractor(items["image"].to(device, non_blocking=True)).float())
            bar.update(len(items["image"]))
    local = torch.cat(parts) if parts else torch.zeros(0, extractor.num_features, device=device)
    return gather(local, len(dataset)).cpu()
