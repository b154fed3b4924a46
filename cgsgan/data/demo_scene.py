"""A procedural, stylised human head made of 3D Gaussians (no download, no model).

``demo_head(seed, count)`` is one head of the parametric family in
:mod:`cgsgan.data.heads` (see there for how it is built): short hair, a neck
down to y = -0.3 and no shoulders, glasses or smile, in a small palette of
skin, hair and iris colours.

World frame as everywhere in cgsgan: y up, the face looks toward +z; the head
is about 0.22 wide, 0.28 tall and 0.25 deep, centred near y = 0.04, and the
scene lies well inside [-0.5, 0.5]^3. ``seed`` varies skin tone, hair and iris
colour and the proportions slightly; the same seed gives the same scene.
"""

from __future__ import annotations

import numbers

import torch

from cgsgan.data.heads import HeadParams, build_head
from cgsgan.gaussians import GaussianScene

__all__ = ["demo_head", "demo_params"]

SKIN_TONES = (
    (0.96, 0.80, 0.69),
    (0.93, 0.74, 0.60),
    (0.84, 0.63, 0.48),
    (0.68, 0.48, 0.34),
    (0.50, 0.34, 0.24),
)
HAIR_COLOURS = (
    (0.09, 0.07, 0.06),  # black
    (0.27, 0.16, 0.09),  # dark brown
    (0.50, 0.33, 0.17),  # light brown
    (0.82, 0.66, 0.40),  # blond
    (0.58, 0.24, 0.10),  # auburn
)
IRIS_COLOURS = (
    (0.33, 0.20, 0.10),  # brown
    (0.22, 0.42, 0.62),  # blue
    (0.30, 0.45, 0.28),  # green
    (0.45, 0.33, 0.18),  # hazel
)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float32))


def _pick(gen: torch.Generator, palette: tuple, jitter: float) -> tuple[float, float, float]:
    """A palette entry with a small random brightness change."""
    index = int(torch.randint(len(palette), (), generator=gen))
    gain = _uniform(gen, 1 - jitter, 1 + jitter)
    return tuple(min(1.0, c * gain) for c in palette[index])


def demo_params(seed: int = 0) -> HeadParams:
    """The parameters of ``demo_head(seed)``: colours from small palettes, proportions near average."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed) % (1 << 63))
    return HeadParams(
        seed=int(seed),
        skin=_pick(gen, SKIN_TONES, 0.04),
        hair_colour=_pick(gen, HAIR_COLOURS, 0.1),
        iris=_pick(gen, IRIS_COLOURS, 0.1),
        width=_uniform(gen, 0.96, 1.04),
        height=_uniform(gen, 0.97, 1.03),
        jaw=_uniform(gen, 0.92, 1.06),
        nose_length=_uniform(gen, 0.9, 1.12),
        eye_spacing=_uniform(gen, 0.043, 0.048),
        hairline=_uniform(gen, 0.115, 0.13),
        hair_style="short",
        bust=False,
    )


def demo_head(seed: int = 0, count: int = 20000) -> GaussianScene:
    """A stylised human head of ``count`` Gaussians (B = 1, float32, CPU).

    Deterministic for a ``seed`` (any int); different seeds change skin tone,
    hair and iris colour and the proportions a little. ``count`` must be an
    integer >= 1000 (ValueError otherwise); 20000 looks clean at 256 px, more
    helps at 512 px and above. See the module docstring for what it builds.
    """
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1000:
        raise ValueError(f"count must be an integer >= 1000, got {count!r}")
    return build_head(demo_params(seed), count)
