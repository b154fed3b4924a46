"""The one palette of the synthetic heads: albedo colours in [0, 1], shared by every preset.

Skin tones run from very light to very dark and are blended continuously
between neighbours; hair and iris colours carry a weight for light and one
for dark skin, blended by the skin's darkness when a head is drawn
(:func:`cgsgan.synthetic.params.sample_head_params`). The demo head picks
from the same lists (:mod:`cgsgan.synthetic.demo`).
"""

from __future__ import annotations

__all__ = ["CLOTHES", "FRAMES", "HAIR_COLOURS", "IRIS_COLOURS", "SKIN_TONES"]

SKIN_TONES = (  # very light to very dark; sampled continuously between neighbours
    (0.98, 0.85, 0.76),
    (0.95, 0.78, 0.66),
    (0.90, 0.70, 0.56),
    (0.80, 0.60, 0.45),
    (0.66, 0.47, 0.33),
    (0.50, 0.34, 0.23),
    (0.36, 0.23, 0.15),
)
HAIR_COLOURS = (  # (colour, weight for light skin, weight for dark skin)
    ((0.06, 0.05, 0.045), 0.16, 0.55),  # black
    ((0.17, 0.10, 0.06), 0.20, 0.30),  # dark brown
    ((0.34, 0.21, 0.11), 0.16, 0.07),  # brown
    ((0.55, 0.39, 0.22), 0.10, 0.01),  # light brown
    ((0.86, 0.70, 0.44), 0.10, 0.01),  # blond
    ((0.93, 0.88, 0.74), 0.03, 0.0),  # platinum
    ((0.63, 0.24, 0.09), 0.07, 0.0),  # red
    ((0.40, 0.15, 0.07), 0.06, 0.01),  # auburn
    ((0.55, 0.54, 0.53), 0.07, 0.03),  # grey
    ((0.84, 0.83, 0.82), 0.05, 0.02),  # white
)
IRIS_COLOURS = (  # (colour, weight for light skin, weight for dark skin)
    ((0.20, 0.11, 0.05), 0.25, 0.75),  # dark brown
    ((0.36, 0.21, 0.10), 0.20, 0.22),  # brown
    ((0.45, 0.35, 0.18), 0.15, 0.03),  # hazel
    ((0.30, 0.45, 0.28), 0.12, 0.0),  # green
    ((0.24, 0.44, 0.68), 0.20, 0.0),  # blue
    ((0.45, 0.50, 0.55), 0.08, 0.0),  # grey
)
CLOTHES = (
    (0.92, 0.92, 0.90),  # white
    (0.08, 0.08, 0.09),  # black
    (0.45, 0.46, 0.48),  # grey
    (0.12, 0.16, 0.32),  # navy
    (0.25, 0.40, 0.65),  # blue
    (0.62, 0.12, 0.12),  # red
    (0.20, 0.38, 0.24),  # green
    (0.78, 0.70, 0.56),  # beige
    (0.42, 0.12, 0.20),  # burgundy
    (0.80, 0.62, 0.20),  # mustard
    (0.58, 0.45, 0.65),  # lilac
)
FRAMES = (
    (0.04, 0.04, 0.04),  # black
    (0.22, 0.12, 0.06),  # tortoise brown
    (0.35, 0.36, 0.38),  # gunmetal
    (0.70, 0.58, 0.30),  # gold
    (0.10, 0.13, 0.28),  # navy
)
