"""Heads from a network: seeds -> latents -> scenes, the way every app makes them.

    G = open_network(None)                      # the built-in network; or a .safetensors / official .pkl
    seeds = parse_seeds("0-3,7")                # [0, 1, 2, 3, 7]
    heads = generate(G, seeds, truncation=0.8)  # Heads: z [B, 512], ws [B, num_ws, 512], scene B
    level_ranges(G.cfg)                         # [(0, 512), (512, 2560), ...]: each level's Gaussians

A seed's latent is ``np.random.RandomState(seed).randn(1, z_dim)``, the
convention of the StyleGAN / EG3D family's generation scripts, so seed 0 is
the same head here as in those tools. Each latent is mapped once and
synthesised from its ws (the reference's sample script feeds its ws through
the mapping network a second time, which loses the truncation).
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cgsgan.apps.files import resolve_device
from cgsgan.config import GeneratorConfig
from cgsgan.gaussians import GaussianScene
from cgsgan.io import load_network
from cgsgan.models import CGSGenerator
from cgsgan.models.synthesizer import PRECISIONS, Synthesizer, precision_context

__all__ = [
    "Heads",
    "MAX_SEEDS",
    "PRECISIONS",
    "Synthesizer",
    "check_truncation",
    "generate",
    "level_ranges",
    "open_network",
    "parse_seeds",
    "precision_context",
    "seed_latents",
]

MAX_SEEDS = 100_000  # a range longer than this is almost surely a typo
MAX_SEED = 2**32 - 1  # numpy's RandomState takes 32-bit seeds
_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """Seeds from "0-3,7" (ranges inclusive, in the order written), an int or a list.

    Raises ValueError with the offending part for anything else (negative
    numbers, reversed ranges, seeds >= 2^32, empty lists, repeats).
    """
    if isinstance(text, bool):
        raise ValueError(f"seeds must be like 0-3,7, got {text!r}")
    if isinstance(text, int):
        items = [text]
    elif isinstance(text, str):
        items = []
        for part in text.replace(" ", "").split(","):
            match = _ITEM.match(part)
            if not match:
                raise ValueError(f"seeds {text!r}: {part!r} is not a seed or a range like 0-7 (write 0-3,7)")
            start, stop = int(match[1]), int(match[2] or match[1])
            if stop < start:
                raise ValueError(f"seeds {text!r}: the range {part!r} runs backwards")
            if len(items) + stop - start >= MAX_SEEDS:
                raise ValueError(f"seeds {text!r}: more than {MAX_SEEDS} seeds")
            items.extend(range(start, stop + 1))
    else:
        items = list(text)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in items):
            raise ValueError(f"seeds must be integers, got {items!r}")
    if not items:
        raise ValueError("no seeds given")
    bad = [s for s in items if not 0 <= s <= MAX_SEED]
    if bad:
        raise ValueError(f"seeds must be in 0..{MAX_SEED}, got {bad[0]}")
    if len(set(items)) != len(items):
        repeated = next(s for s, n in Counter(items).items() if n > 1)
        raise ValueError(f"seed {repeated} is listed twice")
    if len(items) > MAX_SEEDS:
        raise ValueError(f"{len(items)} seeds: at most {MAX_SEEDS} at once")
    return items


def seed_latents(seeds: Sequence[int], z_dim: int) -> Tensor:
    """z [len(seeds), z_dim] float32: row i is RandomState(seeds[i]).randn(1, z_dim)."""
    rows = [np.random.RandomState(seed).randn(1, z_dim) for seed in seeds]
    return torch.from_numpy(np.concatenate(rows)).float()


def open_network(network: str | os.PathLike | None, device: str | torch.device | None = "cpu") -> CGSGenerator:
    """A generator, ready for inference, from a cgsgan .safetensors file, an official .pkl or None (built in)."""
    device = resolve_device(device)
    if network is not None and not Path(network).is_file():
        raise FileNotFoundError(errno.ENOENT, "no network file", str(network))
    return load_network(network, device=device)


def check_truncation(truncation: object) -> float:
    """``truncation`` as a float; ValueError unless it is a finite number."""
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not np.isfinite(truncation):
        raise ValueError(f"truncation must be a number (1 = none, 0 = the average head), got {truncation!r}")
    return float(truncation)


@dataclass
class Heads:
    """What :func:`generate` made: the latents, their ws and the scenes (batch order = seed order)."""

    seeds: list[int] | None  # None when the latents were given directly
    z: Tensor  # [B, z_dim]
    ws: Tensor  # [B, num_ws, w_dim]
    scene: GaussianScene  # B scenes, every level's Gaussians, level 0 first
    truncation: float

    def latent_arrays(self, index: int) -> dict[str, np.ndarray]:
        """The latent of head ``index`` as arrays for an .npz: z [1, z_dim], w [1, num_ws, w_dim], seed, psi."""
        arrays = {
            "z": self.z[index : index + 1].cpu().numpy(),
            "w": self.ws[index : index + 1].cpu().numpy(),
            "truncation_psi": np.float32(self.truncation),
        }
        if self.seeds is not None:
            arrays["seed"] = np.int64(self.seeds[index])
        return arrays


def generate(
    G: CGSGenerator,
    seeds: Sequence[int] | None = None,
    truncation: float = 0.8,
    z: Tensor | None = None,
    batch: int = 8,
    precision: str = "float32",
    synthesizer: Synthesizer | None = None,
) -> Heads:
    """Scenes for ``seeds`` (or for latents ``z`` [B, z_dim]), truncated towards w_avg by ``truncation``.

    Runs without gradients on G's device, ``batch`` heads per call; the scene
    stays on that device. ``precision`` "bfloat16" or "float16" runs the
    network under ``torch.autocast`` (faster on GPUs with fast half matmuls;
    the scene comes back in float32; see the README for the image error).
    ``synthesizer`` (e.g. one made with ``compile=True``, reused across calls)
    replaces the plain one; a compiled one without a batch size of its own
    takes ``batch``.
    """
    precision_context(torch.device("cpu"), precision)  # checks the name before anything runs
    if (seeds is None) == (z is None):
        raise ValueError("give either seeds or z")
    truncation = check_truncation(truncation)
    device = next(G.parameters()).device
    if z is None:
        z = seed_latents(seeds, G.cfg.z_dim)
    if z.dim() != 2 or z.shape[1] != G.cfg.z_dim:
        raise ValueError(f"z must have shape [B, {G.cfg.z_dim}], got {list(z.shape)}")
    z = z.to(device=device, dtype=torch.float32)
    synthesizer = synthesizer or Synthesizer(G, precision)
    if synthesizer.compiled and synthesizer.batch is None:
        synthesizer.batch = min(batch, len(z))
    ws, scenes = [], []
    for chunk in z.split(batch):
        with torch.no_grad(), precision_context(device, precision):
            w = G.mapping(chunk, truncation_psi=float(truncation)).float()
        ws.append(w)
        scenes.append(synthesizer(w))
    return Heads(
        list(seeds) if seeds is not None else None, z, torch.cat(ws), GaussianScene.cat(scenes), float(truncation)
    )


def level_ranges(cfg: GeneratorConfig) -> list[tuple[int, int]]:
    """[start, stop) of each hierarchy level's Gaussians in a generated scene, level 0 first."""
    ranges, start = [], 0
    for ratio in cfg.cumulative_ratios:
        stop = start + cfg.num_points * ratio
        ranges.append((start, stop))
        start = stop
    return ranges
