"""The demo head: one preset of the synthetic heads, for examples and tests.

``demo_head(seed, count)`` is a head of :mod:`cgsgan.synthetic.builder` with
short hair, a neck down to the frame's bottom and no shoulders, glasses or
smile, its colours picked from the shared palette
(:mod:`cgsgan.synthetic.palette`) and its proportions near average. ``seed``
varies skin tone, hair and iris colour and the proportions slightly; the same
seed gives the same scene.
"""

from __future__ import annotations

import numbers

import torch

from cgsgan.gaussians import GaussianScene
from cgsgan.synthetic.builder import build_head
from cgsgan.synthetic.palette import HAIR_COLOURS, IRIS_COLOURS, SKIN_TONES
from cgsgan.synthetic.params import Colour, HeadParams

__all__ = ["demo_head", "demo_params"]

# The demo's picks from the palette: everyday skin tones, hair and iris colours (no grey, white or platinum).
DEMO_SKIN = SKIN_TONES[:6]
DEMO_HAIR = tuple(colour for colour, light, _ in HAIR_COLOURS if light >= 0.06 and min(colour) < 0.5)
DEMO_IRIS = tuple(colour for colour, _, _ in IRIS_COLOURS[:5])


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float32))


def _pick(gen: torch.Generator, colours: tuple[Colour, ...], jitter: float) -> Colour:
    """One of ``colours`` with a small random brightness change."""
    index = int(torch.randint(len(colours), (), generator=gen))
    gain = _uniform(gen, 1 - jitter, 1 + jitter)
    return tuple(min(1.0, c * gain) for c in colours[index])


def demo_params(seed: int = 0) -> HeadParams:
    """The parameters of ``demo_head(seed)``: colours from the palette, proportions near average."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed) % (1 << 63))
    return HeadParams(
        seed=int(seed),
        skin=_pick(gen, DEMO_SKIN, 0.04),
        hair_colour=_pick(gen, DEMO_HAIR, 0.1),
        iris=_pick(gen, DEMO_IRIS, 0.1),
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

    Deterministic for a ``seed`` (any int). ``count`` must be an integer >= 1000
    (ValueError otherwise); 20000 looks clean at 256 px, more helps at 512 px
    and above.
    """
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1000:
        raise ValueError(f"count must be an integer >= 1000, got {count!r}")
    return build_head(demo_params(seed), count)
