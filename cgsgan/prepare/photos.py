"""Where the photos come from: a folder (searched recursively), a zip archive, or a list file.

A list file is a text file with one photo path per line (relative paths are
taken from the list's folder; blank lines and lines starting with # are
skipped). Every photo is named by a stable string (its relative path, its zip
member name, or its line), which the report and the resumed run use.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cgsgan.data.source import Source

__all__ = ["PHOTO_SUFFIXES", "Photos", "decode_photo"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class Photos:
    """The photos under ``path``: ``names()`` and ``read(name) -> bytes``, picklable for worker processes."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no photos at {path}")
        self.path = path.resolve()
        self._source: Source | None = None
        self._list: dict[str, Path] | None = None
        if path.is_dir() or zipfile.is_zipfile(path):
            self._source = Source(path)
            self._names = [n for n in self._source.names() if _is_photo(n) and not _hidden(n)]
        else:
            self._list = _read_list(self.path)
            self._names = list(self._list)
        if not self._names:
            raise ValueError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {path}")

    def __len__(self) -> int:
        return len(self._names)

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str) -> bytes:
        if self._source is not None:
            return self._source.read(name)
        return self._list[name].read_bytes()

    def stamp(self, name: str) -> str:
        """What changes when the photo does (size and modification time, or the zip's CRC)."""
        if self._source is not None:
            return self._source.stamp(name)
        stat = self._list[name].stat()
        return f"size {stat.st_size} mtime {stat.st_mtime_ns}"


def _is_photo(name: str) -> bool:
    return name.lower().endswith(PHOTO_SUFFIXES)


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _read_list(path: Path) -> dict[str, Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a folder, a zip archive or a text list of photos: {e}") from None
    out = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            target = Path(line).expanduser()
            out[line] = target if target.is_absolute() else path.parent / target
    return out


def decode_photo(data: bytes) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an encoded photo, turned upright by its EXIF orientation; ValueError if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"unreadable image: {e}") from None
