"""Where a dataset's files live: a folder or a zip archive, read by relative POSIX names.

Both kinds answer the same questions (which files, read one whole or open it as a
stream, does one exist), so the dataset code never joins paths itself and never
depends on the working directory. A zip is reopened in each process, so
DataLoader workers can share it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO


class Source:
    """Files under a root folder, or inside a zip archive, by relative POSIX name."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise FileNotFoundError(f"no dataset at {self.path}")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise ValueError(f"{self.path} is neither a folder nor a zip archive")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        self._names: list[str] | None = None
        self._set: set[str] | None = None

    def __repr__(self) -> str:
        return f"Source({str(self.path)!r})"

    def __getstate__(self) -> dict:  # the open zip handle stays in its process
        return {**self.__dict__, "_zip": None, "_zip_pid": -1}

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def names(self) -> list[str]:
        """Every file, as sorted relative POSIX paths."""
        if self._names is None:
            if self.is_zip:
                names = [info.filename for info in self._archive().infolist() if not info.is_dir()]
            else:
                names = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]
            self._names = sorted(names)
        return self._names

    def exists(self, name: str) -> bool:
        if self._set is None:
            self._set = set(self.names())
        return name in self._set

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._archive().read(name)
        return (self.path / name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        """A seekable binary file object that reads on demand (close it after use), so that a reader
        that needs only a file's header (PIL's ``Image.open``) reads only that."""
        if self.is_zip:
            return self._archive().open(name)
        return (self.path / name).open("rb")

    def stamp(self, name: str) -> str:
        """What changes when the file's content does, without reading it: the CRC and size a zip
        records; a file's size and modification time."""
        if self.is_zip:
            info = self._archive().getinfo(name)
            return f"crc {info.CRC:08x} size {info.file_size}"
        stat = (self.path / name).stat()
        return f"size {stat.st_size} mtime {stat.st_mtime_ns}"

    def describe(self, name: str) -> str:
        """How to name a file in messages: its full path, or archive.zip:name."""
        return f"{self.path}:{name}" if self.is_zip else str(self.path / name)
