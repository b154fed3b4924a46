"""What a synthetic head is: :class:`HeadParams`, and random heads drawn from seeds.

    params = sample_head_params(seed=7)   # a random, frozen HeadParams
    HeadParams(hair_style="bob", smile=1)  # or any head by hand

Proportions are factors (1 for the average head), colours albedo RGB in [0, 1]
before the baked lighting, lengths and heights model units (the head is about
0.22 wide before the scenes are framed, see :mod:`cgsgan.synthetic.builder`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from cgsgan.synthetic.palette import CLOTHES, FRAMES, HAIR_COLOURS, IRIS_COLOURS, SKIN_TONES

__all__ = ["HAIR_LENGTHS", "HAIR_STYLES", "HeadParams", "sample_head_params"]

Colour = tuple[float, float, float]

HAIR_STYLES = ("short", "long", "bob", "bun", "ponytail", "buzz", "bald", "curly")
# Hair styles: (weight, range of the masculinity latent that shapes the face).
STYLE_PRIORS = {
    "short": (0.22, (0.45, 1.0)),
    "long": (0.17, (0.0, 0.4)),
    "bob": (0.11, (0.0, 0.45)),
    "bun": (0.08, (0.0, 0.4)),
    "ponytail": (0.10, (0.0, 0.45)),
    "buzz": (0.11, (0.55, 1.0)),
    "bald": (0.08, (0.65, 1.0)),
    "curly": (0.13, (0.0, 1.0)),
}
HAIR_LENGTHS = {"long": (-0.27, -0.17), "bob": (-0.10, -0.055), "ponytail": (-0.17, -0.09)}


@dataclass(frozen=True)
class HeadParams:
    """Everything that makes one head. The defaults are an average head with short brown hair.

    Proportion factors are 1 for the average head and scale the part they name;
    colours are albedo RGB in [0, 1], before the baked lighting; lengths and
    heights are model units (the head is about 0.22 wide; the builder scales its scenes).
    """

    seed: int = 0  # drives the surface sampling and the per-Gaussian colour noise
    # -- head and face shape
    width: float = 1.0  # skull, jaw and brow width (x)
    height: float = 1.0  # skull height (y)
    depth: float = 1.0  # skull depth, front to back (z)
    jaw: float = 1.0  # jaw width, on top of ``width``
    chin: float = 1.0  # chin length and prominence
    cheeks: float = 1.0  # cheek fullness
    neck: float = 1.0  # neck thickness
    nose_length: float = 1.0  # nose length (and how far down its tip sits)
    nose_width: float = 1.0  # width of the bridge, tip and wings
    eye_spacing: float = 0.0455  # |x| of the eye centres
    eye_size: float = 1.0  # eyeball size, so also how wide the eyes open
    ear_size: float = 1.0  # ear height and depth
    ear_angle: float = 0.35  # radians the ears turn out from the skull (larger: protruding)
    mouth_width: float = 1.0  # lip width
    lips: float = 1.0  # lip thickness
    smile: float = 0.0  # 0 neutral .. 1 broad smile: corners up, lips parted over teeth, cheeks up
    brow_weight: float = 1.0  # eyebrow thickness
    brow_arch: float = 1.0  # eyebrow arch height
    # -- colours
    skin: Colour = (0.93, 0.74, 0.60)  # skin albedo
    iris: Colour = (0.33, 0.20, 0.10)  # iris albedo
    lip_tint: float = 0.0  # 0 natural lips .. 1 red lipstick
    # -- hair
    hair_style: str = "short"  # one of HAIR_STYLES
    hair_colour: Colour = (0.27, 0.16, 0.09)  # hair albedo (brows are a darker shade of it)
    hairline: float = 0.122  # hairline height at the middle of the forehead (below ~0.1: a fringe)
    hair_volume: float = 1.0  # thickness of the hair over the skull (and of buns, tails, curtains)
    hair_length: float = -0.2  # y where long, bob and ponytail hair ends
    hair_front: float = 0.03  # z of the front edge of long and bob hair at the sides (> 0.01 hides the ears)
    beard: float = 0.0  # 0 clean-shaven, ~0.3 stubble, 1 full beard (painted on the skin)
    # -- glasses, clothes
    glasses: bool = False  # whether the head wears glasses
    glasses_colour: Colour = (0.04, 0.04, 0.04)  # frame colour
    glasses_shape: float = 0.5  # 0 round .. 1 rectangular rims (also thicker frames)
    glasses_size: float = 1.0  # lens size
    bust: bool = True  # shoulders and chest in clothes under the neck (False: the neck ends at y = -0.3)
    clothes: Colour = (0.12, 0.16, 0.32)  # clothes albedo
    neckline: float = 0.03  # how far the neckline of the clothes dips at the front
    # -- lighting
    light_azimuth: float = 0.43  # key light direction: radians around y from +z (+: from the +x side)
    light_elevation: float = 0.58  # key light elevation above the horizontal, radians

    def __post_init__(self) -> None:
        if self.hair_style not in HAIR_STYLES:
            raise ValueError(f"hair_style must be one of {HAIR_STYLES}, got {self.hair_style!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("seed", "hair_style"):
                continue
            if isinstance(value, tuple):
                if len(value) != 3 or not all(0 <= c <= 1 for c in value):
                    raise ValueError(f"{f.name} must be 3 numbers in [0, 1], got {value!r}")
            elif not isinstance(value, bool) and not (isinstance(value, numbers.Real) and math.isfinite(value)):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if not 0 <= self.smile <= 1:
            raise ValueError(f"smile must be in [0, 1], got {self.smile}")


# ------------------------------------------------------------------ sampling
class _Draw:
    """Random draws from one torch.Generator, as python numbers."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(int(seed) % (1 << 63))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.gen, dtype=torch.float64))

    def chance(self, p: float) -> bool:
        return self.uniform(0, 1) < p

    def choice(self, weights: Sequence[float]) -> int:
        return int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=self.gen))


def _skin_tone(draw: _Draw) -> tuple[Colour, float]:
    """A skin albedo between neighbouring palette tones and its darkness t in [0, 1]."""
    t = draw.uniform(0, 1)
    pos = t * (len(SKIN_TONES) - 1)
    i = min(int(pos), len(SKIN_TONES) - 2)
    a, b, f = SKIN_TONES[i], SKIN_TONES[i + 1], pos - i
    warm = draw.uniform(-1, 1)  # undertone: pinker or more olive
    tone = [(1 - f) * x + f * y for x, y in zip(a, b, strict=True)]
    tone = [tone[0] * (1 + 0.02 * warm), tone[1] * (1 - 0.01 * warm), tone[2] * (1 - 0.04 * warm)]
    return _clip(tone), t


def _clip(colour: Sequence[float]) -> Colour:
    return tuple(min(1.0, max(0.0, float(c))) for c in colour)


def _palette(draw: _Draw, palette: Sequence, darkness: float, jitter: float) -> Colour:
    """A palette entry chosen with weights blended by skin darkness, brightness jittered."""
    weights = [(1 - darkness) * light + darkness * dark for _, light, dark in palette]
    colour = palette[draw.choice(weights)][0]
    gain = draw.uniform(1 - jitter, 1 + jitter)
    return _clip(c * gain for c in colour)


def sample_head_params(seed: int) -> HeadParams:
    """A random head: shape, colours, hair style, expression, glasses (about 1 in 5), clothes, light.

    Deterministic for ``seed`` (any int). A hidden masculinity latent, drawn
    within a range set by the hair style, couples jaw, brows, neck, beard and
    lipstick, so that faces stay coherent.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    draw = _Draw(seed)
    style = HAIR_STYLES[draw.choice([STYLE_PRIORS[s][0] for s in HAIR_STYLES])]
    low, high = STYLE_PRIORS[style][1]
    male = draw.uniform(low, high)
    skin, dark = _skin_tone(draw)
    hair = _palette(draw, HAIR_COLOURS, dark, 0.12)
    if style == "curly" and dark > 0.5:
        hair = _palette(draw, HAIR_COLOURS[:2], 1.0, 0.1)
    length = HAIR_LENGTHS.get(style, (-0.2, -0.2))
    neutral = draw.chance(0.4)
    return HeadParams(
        seed=int(seed),
        width=draw.uniform(0.95, 1.05) + 0.02 * male,
        height=draw.uniform(0.96, 1.04),
        depth=draw.uniform(0.96, 1.04),
        jaw=draw.uniform(0.9, 1.0) + 0.09 * male,
        chin=draw.uniform(0.9, 1.08) + 0.08 * male,
        cheeks=draw.uniform(0.85, 1.2),
        neck=draw.uniform(1.06, 1.2) + 0.14 * male,
        nose_length=draw.uniform(0.9, 1.14),
        nose_width=draw.uniform(0.85, 1.2) + 0.05 * dark,
        eye_spacing=draw.uniform(0.0425, 0.0485),
        eye_size=draw.uniform(0.92, 1.1) - 0.04 * male,
        ear_size=draw.uniform(0.88, 1.15),
        ear_angle=draw.uniform(0.2, 0.55),
        mouth_width=draw.uniform(0.9, 1.12),
        lips=draw.uniform(0.8, 1.2) + 0.15 * dark - 0.1 * male,
        smile=draw.uniform(0.0, 0.25) if neutral else draw.uniform(0.35, 1.0),
        brow_weight=draw.uniform(0.7, 1.0) + 0.25 * male,
        brow_arch=draw.uniform(0.7, 1.4) - 0.25 * male,
        skin=skin,
        iris=_palette(draw, IRIS_COLOURS, dark, 0.12),
        lip_tint=draw.uniform(0.3, 0.9) if male < 0.4 and draw.chance(0.35) else draw.uniform(0, 0.15),
        hair_style=style,
        hair_colour=hair,
        hairline=draw.uniform(0.078, 0.1) if draw.chance(0.25) and style != "bald" else draw.uniform(0.105, 0.135),
        hair_volume=draw.uniform(0.75, 1.3),
        hair_length=draw.uniform(*length),
        hair_front=draw.uniform(-0.01, 0.045),
        beard=(draw.uniform(0.2, 1.0) if draw.chance(0.5) else 0.0) if male > 0.6 else 0.0,
        glasses=draw.chance(0.2),
        glasses_colour=_clip(c * draw.uniform(0.9, 1.1) for c in FRAMES[draw.choice([3, 2, 1, 1, 1])]),
        glasses_shape=draw.uniform(0, 1),
        glasses_size=draw.uniform(0.9, 1.1),
        bust=True,
        clothes=_clip(c * draw.uniform(0.85, 1.1) for c in CLOTHES[draw.choice([1] * len(CLOTHES))]),
        neckline=draw.uniform(0.0, 0.07),
        light_azimuth=draw.uniform(-0.75, 0.75),
        light_elevation=draw.uniform(0.25, 0.85),
    )
