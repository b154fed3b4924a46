"""The built-in default dataset: synthetic heads, generated once into a cache folder.

``default_dataset()`` returns the folder of a ready dataset, generating it the
first time (about 25 s per thousand images at 64^2 on two cores). The
folder's name records what it holds, and a dataset is only used once it is
complete: generation goes to a temporary folder that is renamed at the end, so
an interrupted run leaves nothing that looks finished.

The cache lives in ``$CGSGAN_CACHE``, else ``$XDG_CACHE_HOME/cgsgan``, else
``~/.cache/cgsgan``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

DEFAULT_COUNT = 5000
DEFAULT_RESOLUTION = 64


def cache_dir() -> Path:
    if os.environ.get("CGSGAN_CACHE"):
        return Path(os.environ["CGSGAN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cgsgan"


def default_dataset(
    resolution: int = DEFAULT_RESOLUTION,
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The folder of the synthetic heads dataset for these settings, generated if it is not there yet."""
    from cgsgan.synthetic.dataset import SYNTH_VERSION, synthesize_dataset

    root = Path(root) if root is not None else cache_dir()
    target = root / f"synth-v{SYNTH_VERSION}-r{resolution}-n{count}-s{seed}"
    if (target / "dataset.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        synthesize_dataset(partial, count=count, resolution=resolution, seed=seed, progress=progress)
        try:
            partial.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / "dataset.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
