"""Rebalancing a head dataset by pose and expression, as the CGS-GAN paper does for FFHQC.

FFHQ is mostly frontal and its frontal faces mostly smile. A generator without
view-dependent effects then learns heads that smile only from the front. The
paper adds about 12k non-smiling frontal faces and duplicates about 50k images
of extreme poses (to 70k images). Here that is a distribution file: a JSON list
of image numbers in which a repeated number oversamples its image
(``HeadsDataset(distribution=...)``, ``custom_dist`` in the reference).

The attributes come from a CSV with one row per image: a ``file`` (or
``number``) column and ``yaw_deg``, ``pitch_deg`` and ``smile`` (0 to 1) columns
(``cgsgan dataset synth`` writes one; for photos, any head-pose and smile
estimator will do).
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cgsgan.data.catalog import image_number

REQUIRED = ("yaw_deg", "pitch_deg", "smile")


@dataclass(frozen=True)
class Attributes:
    """Pose and expression of one image."""

    number: int
    yaw_deg: float  # from frontal; the sign does not matter here
    pitch_deg: float
    smile: float  # 0 neutral .. 1 smiling


@dataclass(frozen=True)
class Rebalancing:
    """How many extra copies each kind of image gets (0 disables a rule)."""

    extreme_yaw_deg: float = 30.0  # |yaw| at least this is an extreme pose
    extreme_copies: int = 1  # extra copies of every extreme-pose image
    steep_yaw_deg: float = 45.0  # |yaw| at least this is a steep pose: extreme copies + these
    steep_copies: int = 1
    frontal_yaw_deg: float = 15.0  # |yaw| below this (and |pitch| below frontal_pitch_deg) is frontal
    frontal_pitch_deg: float = 15.0
    neutral_smile: float = 0.3  # smile below this is not smiling
    neutral_copies: int = 1  # extra copies of every non-smiling frontal image

    def __post_init__(self) -> None:
        for name in ("extreme_copies", "steep_copies", "neutral_copies"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.extreme_yaw_deg <= self.steep_yaw_deg:
            raise ValueError("need 0 <= extreme_yaw_deg <= steep_yaw_deg")

    def copies(self, a: Attributes) -> int:
        """How many times the image appears in the rebalanced list (at least once)."""
        yaw = abs(a.yaw_deg)
        count = 1
        if yaw >= self.extreme_yaw_deg:
            count += self.extreme_copies
        if yaw >= self.steep_yaw_deg:
            count += self.steep_copies
        frontal = yaw < self.frontal_yaw_deg and abs(a.pitch_deg) < self.frontal_pitch_deg
        if frontal and a.smile < self.neutral_smile:
            count += self.neutral_copies
        return count


def read_attributes(path: str | os.PathLike) -> list[Attributes]:
    """Rows of an attributes CSV, with errors naming the file, line and column."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: unreadable attributes CSV: {e}") from None
    missing = [c for c in REQUIRED if c not in header]
    if "file" not in header and "number" not in header:
        missing.insert(0, "file or number")
    if not rows or missing:
        raise ValueError(f"{path}: needs a header with columns {', '.join(missing or REQUIRED)} and at least one row")
    out = []
    for line, row in enumerate(rows, start=2):
        number = _int(row["number"]) if row.get("number") else image_number(row.get("file") or "")
        if number is None:
            raise ValueError(f"{path}:{line}: no image number in {row.get('file') or row.get('number')!r}")
        values = {}
        for column in REQUIRED:
            try:
                values[column] = float(row[column])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: {column} is {row[column]!r}, not a number") from None
            if not math.isfinite(values[column]):
                raise ValueError(f"{path}:{line}: {column} is not finite")
        out.append(Attributes(number, **values))
    return out


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def rebalance(attributes: Sequence[Attributes], rules: Rebalancing = Rebalancing()) -> list[int]:
    """The distribution: every image number repeated ``rules.copies`` times, sorted (as the reference's files)."""
    return sorted(a.number for a in attributes for _ in range(rules.copies(a)))


def pose_histogram(
    attributes: Sequence[Attributes], distribution: Sequence[int] | None = None, bin_deg: float = 15.0, width: int = 40
) -> str:
    """A text histogram of |yaw| (and the share of smiling frontal faces), before or after rebalancing."""
    by_number = {a.number: a for a in attributes}
    chosen = [by_number[n] for n in distribution] if distribution is not None else list(attributes)
    bins = Counter(int(abs(a.yaw_deg) // bin_deg) for a in chosen)
    top = max(bins.values(), default=1)
    lines = []
    for b in range(max(bins, default=0) + 1):
        share = bins.get(b, 0) / max(len(chosen), 1)
        bar = "#" * round(width * bins.get(b, 0) / top)
        lines.append(f"|yaw| {b * bin_deg:3.0f}-{(b + 1) * bin_deg:3.0f} deg  {bins.get(b, 0):7d}  {share:6.1%}  {bar}")
    return "\n".join(lines)
