"""A dataset's table of contents, and every problem with it, found up front.

Layout (one of):

    FFHQC:  <root>/512/00000.png ...   <root>/mask/00000.png ...   <root>/dataset.json
            (PATH is the resolution folder; masks and labels may also sit inside it)
    EG3D:   PATH/00000/img00000000.png ...   PATH/dataset.json   (masks optional: PATH/mask/<same names>)
    zip:    either of the above inside an archive, with dataset.json and mask/ at its root

``dataset.json`` is ``{"labels": [[name, [25 floats]], ...]}``: the row-major 4x4
cam2world (OpenCV axes) and the row-major normalised 3x3 intrinsics. A label is
found for an image by its relative path, else by its file name, else by its stem
with ".png" (the official lookup), so one label file serves every resolution
and image format. An image's *number* is the last run of digits in its stem
(``00042.png`` and ``00000/img00000042.png`` are both 42); distribution files
list these numbers.

:func:`scan` reads the labels and the headers of images and masks (and, with
``decode=True``, every image and mask in full) and returns the catalog together
with every problem, each naming its file, so that ``cgsgan dataset check`` and
the loader report the same messages. Headers are parsed from files opened as
streams (:meth:`Source.open`), so a scan reads the start of each file (a few
kilobytes with buffering), not all of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cgsgan.data.source import Source

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LABELS_FILE = "dataset.json"
MASK_DIR = "mask"
LABEL_LENGTH = 25
ROTATION_TOLERANCE = 1e-3  # |R R^T - I| and |det R - 1| allowed by the check
_DIGITS = re.compile(r"\d+")
# What reading a broken image can raise: PIL's errors (UnidentifiedImageError is an OSError), a bad compressed
# text chunk, and a zip member whose CRC does not match.
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, zipfile.BadZipFile)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file it concerns and what is wrong."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class DatasetError(ValueError):
    """A dataset with problems; the message lists them (the first 20)."""

    def __init__(self, path: str | os.PathLike, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(
            f"dataset {path} has {len(self.problems)} problem(s):\n{shown}{more}\n"
            f"(`cgsgan dataset check {path}` lists them all)"
        )


@dataclass(frozen=True)
class Entry:
    """One image: its relative name, number, label [25] and mask name (None: no mask)."""

    name: str
    number: int
    label: tuple[float, ...]
    mask: str | None


@dataclass
class Catalog:
    """The images of a dataset with their labels and masks, in name order."""

    path: Path
    images: Source
    masks: Source | None
    entries: list[Entry]
    resolution: int
    problems: list[Problem] = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 (hex) of every entry's name, label, and image and mask stamps (:meth:`Source.stamp`):
        changes when an image, mask or label is added, removed or rewritten, at the cost of a stat per file."""
        digest = hashlib.sha256(f"resolution {self.resolution}\n".encode())
        for e in self.entries:
            mask = "none" if e.mask is None else self.masks.stamp(e.mask)
            line = f"{e.name}|{e.number}|{json.dumps(e.label)}|{self.images.stamp(e.name)}|{mask}\n"
            digest.update(line.encode())
        return digest.hexdigest()

    def numbers(self) -> dict[int, int]:
        """Image number -> position in ``entries``."""
        return {e.number: i for i, e in enumerate(self.entries)}


# ------------------------------------------------------------------ layout
def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def image_number(name: str) -> int | None:
    """The last run of digits in the file's stem, e.g. 42 for ``00000/img00000042.png``."""
    digits = _DIGITS.findall(Path(name).stem)
    return int(digits[-1]) if digits else None


def _locate(path: Path) -> tuple[Source, tuple[Source, str] | None, tuple[Source, str] | None]:
    """The image source, where dataset.json is and where the masks are (source, prefix)."""
    images = Source(path)
    labels = (images, LABELS_FILE) if images.exists(LABELS_FILE) else None
    has_masks = any(n.startswith(MASK_DIR + "/") for n in images.names())
    masks = (images, MASK_DIR + "/") if has_masks else None
    parent = images.path.parent
    if labels is None and not images.is_zip and (parent / LABELS_FILE).is_file():  # FFHQC: shared by resolutions
        labels = (Source(parent), LABELS_FILE)
    if masks is None and not images.is_zip and (parent / MASK_DIR).is_dir():
        masks = (Source(parent / MASK_DIR), "")
    return images, labels, masks


# ------------------------------------------------------------------ labels
def check_label(values: object) -> str | None:
    """Why a label is unusable, or None."""
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "label is not a list of numbers"
    if len(values) != LABEL_LENGTH:
        return f"label has {len(values)} numbers, expected {LABEL_LENGTH}"
    if not all(math.isfinite(v) for v in values):
        return "label has non-finite numbers"
    pose = np.asarray(values[:16], dtype=np.float64).reshape(4, 4)
    rotation = pose[:3, :3]
    error = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if error > ROTATION_TOLERANCE or abs(np.linalg.det(rotation) - 1) > ROTATION_TOLERANCE:
        return f"cam2world rotation is not orthonormal (|R R^T - I| = {error:.2g}, det = {np.linalg.det(rotation):.4g})"
    if np.abs(pose[3] - [0, 0, 0, 1]).max() > ROTATION_TOLERANCE:
        return f"cam2world last row is {pose[3].tolist()}, expected [0, 0, 0, 1]"
    focal = values[16], values[20]
    if min(focal) <= 0:
        return f"intrinsics have a non-positive focal length {focal}"
    return None


def _read_labels(source: Source, name: str) -> tuple[dict[str, list], list[Problem]]:
    where = source.describe(name)
    try:
        data = json.loads(source.read(name))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, [Problem(where, f"unreadable: {e}")]
    rows = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return {}, [Problem(where, 'expected {"labels": [[name, [25 numbers]], ...]}')]
    labels, problems = {}, []
    for i, row in enumerate(rows):
        if not (isinstance(row, list | tuple) and len(row) == 2 and isinstance(row[0], str)):
            problems.append(Problem(where, f"labels[{i}] is not a [name, [25 numbers]] pair"))
            continue
        key, values = row
        if key in labels:
            problems.append(Problem(where, f"{key}: listed more than once"))
        labels[key] = values
    return labels, problems


def _label_keys(labels: dict[str, list]) -> tuple[dict[str, str], dict[str, str]]:
    """Lookups by file name and by stem (only where unambiguous)."""
    by_file = Counter(Path(k).name for k in labels)
    by_stem = Counter(Path(k).stem for k in labels)
    return (
        {Path(k).name: k for k in labels if by_file[Path(k).name] == 1},
        {Path(k).stem: k for k in labels if by_stem[Path(k).stem] == 1},
    )


def _find_label(name: str, labels: dict[str, list], by_file: dict[str, str], by_stem: dict[str, str]) -> str | None:
    if name in labels:
        return name
    return by_file.get(Path(name).name) or by_stem.get(Path(name).stem)


# ------------------------------------------------------------------ images
def _image_size(source: Source, name: str, decode: bool) -> tuple[tuple[int, int], str] | str:
    """((width, height), mode) of an image, or why it cannot be read. PIL reads the stream on demand:
    opening parses the header only, and only ``decode`` reads the rest."""
    try:
        with source.open(name) as file, Image.open(file) as image:
            if decode:
                image.load()
            return image.size, image.mode
    except IMAGE_ERRORS as e:
        return f"unreadable or truncated image ({e})"


def _mask_name(masks: tuple[Source, str], name: str) -> str | None:
    source, prefix = masks
    stem = str(Path(name).with_suffix(""))
    for suffix in (".png", *IMAGE_SUFFIXES):
        if source.exists(prefix + stem + suffix):
            return prefix + stem + suffix
    return None


# ------------------------------------------------------------------ scan
def scan(
    path: str | os.PathLike,
    resolution: int | None = None,
    distribution: Sequence[int] | None = None,
    decode: bool = False,
    progress: Iterable | None = None,
) -> Catalog:
    """The catalog of a dataset and every problem found (``catalog.problems``; empty when all is well).

    ``decode=False`` reads the headers of images and masks only (fast); ``decode=True``
    decodes every image and mask, which finds truncated files. ``progress`` may wrap
    the image list (e.g. ``tqdm``) for long scans.
    """
    path = Path(path)
    images, labels_at, masks = _locate(path)
    problems: list[Problem] = []
    names = [
        n
        for n in images.names()
        if _is_image(n) and not (masks and masks[0] is images and n.startswith(MASK_DIR + "/"))
    ]
    if not names:
        problems.append(Problem(str(images.path), "no images (png, jpg, jpeg or webp)"))
    if labels_at is None:
        problems.append(
            Problem(str(images.path / LABELS_FILE), "dataset.json not found (looked in the folder and its parent)")
        )
        labels = {}
    else:
        labels, found = _read_labels(*labels_at)
        problems += found
    by_file, by_stem = _label_keys(labels)

    entries, used, sizes = [], set(), {}
    for name in progress(names) if progress else names:
        where = images.describe(name)
        key = _find_label(name, labels, by_file, by_stem) if labels else None
        if labels_at is not None and key is None:
            problems.append(Problem(where, "no label in dataset.json"))
        elif key is not None:
            used.add(key)
            reason = check_label(labels[key])
            if reason:
                problems.append(Problem(where, f"{reason} (dataset.json entry {key!r})"))
                key = None
        info = _image_size(images, name, decode)
        if isinstance(info, str):
            problems.append(Problem(where, info))
            continue
        (width, height), mode = info
        if width != height:
            problems.append(Problem(where, f"image is {width}x{height}, not square"))
            continue
        sizes[name] = width
        mask = _mask_name(masks, name) if masks else None
        if masks and mask is None:
            problems.append(Problem(where, f"no mask (looked for {masks[0].describe(masks[1] + name)})"))
        elif mask:
            problems += _check_mask(masks[0], mask, width, decode)
        number = image_number(name)
        if key is not None and number is not None:
            entries.append(Entry(name, number, tuple(float(v) for v in labels[key]), mask))

    for key in sorted(set(labels) - used):
        problems.append(Problem(labels_at[0].describe(labels_at[1]), f"{key}: label for an image that is not there"))
    resolution = _check_resolution(images, sizes, resolution, problems)
    if distribution is not None:
        problems += _check_distribution(entries, distribution, str(path))
    return Catalog(path, images, masks[0] if masks else None, entries, resolution, problems)


def _check_mask(source: Source, name: str, width: int, decode: bool) -> list[Problem]:
    info = _image_size(source, name, decode)
    where = source.describe(name)
    if isinstance(info, str):
        return [Problem(where, info)]
    (mw, mh), mode = info
    if mw != mh:
        return [Problem(where, f"mask is {mw}x{mh}, not square like its image")]
    if mode not in ("L", "1", "I", "I;16") and mw != width:
        return [
            Problem(where, f"colour mask is {mw}x{mh} but its image is {width}x{width} (grayscale masks are resized)")
        ]
    return []


def _check_resolution(images: Source, sizes: dict[str, int], wanted: int | None, problems: list[Problem]) -> int:
    if not sizes:
        return wanted or 0
    common = wanted or Counter(sizes.values()).most_common(1)[0][0]
    for name, size in sizes.items():
        if size != common:
            problems.append(Problem(images.describe(name), f"image is {size}x{size}, expected {common}x{common}"))
    return common


def _check_distribution(entries: list[Entry], distribution: Sequence[int], where: str) -> list[Problem]:
    numbers = Counter(e.number for e in entries)
    problems = [
        Problem(where, f"image number {n} is shared by {c} images, so distribution files cannot tell them apart")
        for n, c in sorted(numbers.items())
        if c > 1
    ]
    missing = sorted({i for i in distribution if i not in numbers})
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        problems.append(
            Problem(where, f"distribution lists {len(missing)} image number(s) not in the dataset: {shown}")
        )
    return problems


def read_distribution(path: str | os.PathLike) -> list[int]:
    """A distribution file: a JSON list of image numbers; repeats oversample."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable distribution file: {e}") from None
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValueError(f"{path}: a distribution file must be a JSON list of non-negative image numbers")
    if not values:
        raise ValueError(f"{path}: the distribution is empty")
    return values
