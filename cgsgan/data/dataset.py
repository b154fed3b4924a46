"""The training and evaluation dataset: images composited over a background through their masks, with labels.

``HeadsDataset(path)`` checks the dataset up front (labels, names, image
headers, masks, distribution; see :mod:`cgsgan.data.catalog`) and refuses a
broken one with every problem named. Items are dicts:

    image   uint8 [3, R, R]  composited over a random colour (training) or white (evaluation)
    label   float32 [25]     EG3D camera label (mirrored for x-flipped items)
    mask    uint8 [1, R, R]  255 = head (all 255 for datasets without masks)
    number  int              the image's number (see catalog), for distribution files
    skipped int              unreadable items passed over to produce this one (0 normally)

A distribution file selects and rebalances images (an image number listed k
times appears k times); ``xflip`` then doubles the set with mirrored images and
labels. The random backgrounds are a function of ``seed`` and the index, and an
index past the end wraps with a fresh background: ``InfiniteSampler`` uses this
to make every draw reproducible and resumable.

The up-front check reads headers only, so a file truncated or corrupted in its
body (or after the check) is found when its item is read. ``on_error="raise"``
then raises :class:`DatasetError` naming it; ``on_error="skip"`` (for training)
warns with its name (:class:`BadImageWarning`) and returns the next index's item
instead, counting the skip in ``skipped`` so a batch tells how many it lost.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from cgsgan.camera import mirror_labels
from cgsgan.data.catalog import IMAGE_ERRORS, Catalog, DatasetError, Entry, Problem, read_distribution, scan

BACKGROUNDS = ("random", "white")
ON_ERROR = ("raise", "skip")


class BadImageWarning(UserWarning):
    """An image or mask that could not be read, skipped for the next item (``on_error="skip"``)."""


class _Unreadable(DatasetError):
    """One item's image or mask could not be read: a DatasetError naming it, which "skip" catches."""


class HeadsDataset(torch.utils.data.Dataset):
    """Images, labels and masks of a folder or zip in the EG3D / FFHQC layout."""

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int | None = None,
        distribution: str | os.PathLike | Sequence[int] | None = None,
        xflip: bool = False,
        background: str = "random",
        seed: int = 0,
        on_error: str = "raise",
    ) -> None:
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if isinstance(distribution, str | os.PathLike):
            distribution = read_distribution(distribution)
        catalog = scan(path, resolution=resolution, distribution=distribution)
        if catalog.problems:
            raise DatasetError(path, catalog.problems)
        self.catalog: Catalog = catalog
        self.resolution = catalog.resolution
        self.xflip, self.background, self.seed, self.on_error = xflip, background, seed, on_error
        positions = catalog.numbers()
        order = range(len(catalog.entries)) if distribution is None else [positions[n] for n in distribution]
        self._order = np.asarray(order, dtype=np.int64)
        self._labels = torch.tensor([e.label for e in catalog.entries], dtype=torch.float32)

    @property
    def path(self) -> Path:
        return self.catalog.path

    @property
    def num_images(self) -> int:
        """Selected images before x-flip (with repeats)."""
        return len(self._order)

    @property
    def positions(self) -> np.ndarray:
        """int64 [num_images]: the catalog entry of each selected image (a distribution repeats entries)."""
        return self._order.copy()

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    def _resolve(self, index: int) -> tuple[Entry, bool, int]:
        """entry, flipped, and the wrapped-around index used to seed the background."""
        if index < 0:
            raise IndexError(f"index {index} is negative")
        item = index % len(self)
        flipped = item >= self.num_images
        return self.catalog.entries[self._order[item % self.num_images]], flipped, index

    def labels(self) -> Tensor:
        """The label of every item, in item order (mirrored for the flipped half): [len, 25]."""
        labels = self._labels[torch.from_numpy(self._order)]
        return torch.cat([labels, mirror_labels(labels)]) if self.xflip else labels

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        for skipped in range(len(self)):
            try:
                item = self._item(index + skipped)  # past the end wraps, like any index
            except _Unreadable as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipped {e.problems[0]}", BadImageWarning, stacklevel=2)
                continue
            return {**item, "skipped": skipped}
        raise DatasetError(self.path, [Problem(str(self.path), f"none of the {len(self)} items is readable")])

    def _item(self, index: int) -> dict:
        entry, flipped, draw = self._resolve(index)
        image = self._read(entry.name, self.catalog.images, "RGB")
        r = self.resolution
        if image.shape[-2:] != (r, r):  # rewritten since the scan
            h, w = image.shape[-2:]
            self._fail(self.catalog.images, entry.name, f"image is {w}x{h}, expected {r}x{r}")
        mask = self._read_mask(entry)
        colour = self._background(draw)
        image = (mask.float() / 255 * image.float() + (1 - mask.float() / 255) * colour).to(torch.uint8)  # truncates
        label = torch.tensor(entry.label, dtype=torch.float32)
        if flipped:
            image, mask, label = image.flip(-1), mask.flip(-1), mirror_labels(label[None])[0]
        return {"image": image, "label": label, "mask": mask, "number": entry.number}

    # -------------------------------------------------------------- reading
    def _read(self, name: str, source, mode: str) -> Tensor:
        try:
            with source.open(name) as file, Image.open(file) as image:
                array = np.asarray(image.convert(mode))
        except IMAGE_ERRORS as e:
            self._fail(source, name, f"unreadable or truncated image ({e})")
        tensor = torch.from_numpy(array.copy())
        return tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor[None]

    def _fail(self, source, name: str, message: str) -> NoReturn:
        raise _Unreadable(self.path, [Problem(source.describe(name), message)]) from None

    def _read_mask(self, entry: Entry) -> Tensor:
        r = self.resolution
        if entry.mask is None:
            return torch.full((1, r, r), 255, dtype=torch.uint8)
        mask = self._read(entry.mask, self.catalog.masks, "L")
        if mask.shape[-1] != r:  # one grayscale mask set serves every resolution, as in the reference
            resized = F.interpolate(mask[None].float(), size=(r, r), mode="bilinear", align_corners=False)
            mask = resized[0].round().clamp(0, 255).to(torch.uint8)
        return mask

    def _background(self, draw: int) -> Tensor:
        """[3, 1, 1] float: white, or a colour drawn from (seed, index) with channels in 0..254 as in the reference."""
        if self.background == "white":
            return torch.full((3, 1, 1), 255.0)
        rng = np.random.default_rng([self.seed, draw])
        return torch.from_numpy(rng.integers(0, 255, size=(3, 1, 1)).astype(np.float32))


class LabelSampler:
    """Camera labels for fake images, drawn from the dataset's own (rebalanced, mirrored) distribution."""

    def __init__(self, dataset: HeadsDataset) -> None:
        self.labels = dataset.labels()

    def sample(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """[count, 25] labels of uniformly random items."""
        index = torch.randint(len(self.labels), (count,), generator=generator)
        return self.labels[index]


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Endless shuffled indices for one rank of ``world`` ranks; resumable from any position.

    Round k is a permutation of the dataset drawn from (seed, k). The ranks share one
    stream of positions in blocks of ``block``: rank r's i-th index sits at position
    ``((i // block) * world + r) * block + i % block``, so with ``block`` = the per-rank
    batch, each step's global batch is the same run of positions whatever the number
    of ranks. The index yielded for position p of round k is ``k * len + perm[p]``: the
    dataset wraps it, and the background colour follows it, so restarting at ``start``
    (a count of indices this rank already consumed) reproduces the rest of the stream.
    """

    def __init__(self, size: int, rank: int = 0, world: int = 1, seed: int = 0, start: int = 0,
                 block: int = 1) -> None:  # fmt: skip
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.size, self.rank, self.world, self.seed, self.start, self.block = size, rank, world, seed, start, block

    def __iter__(self) -> Iterator[int]:
        i, round_, perm = self.start, -1, None
        while True:
            position = ((i // self.block) * self.world + self.rank) * self.block + i % self.block
            r, p = divmod(position, self.size)
            if r != round_:
                round_, perm = r, np.random.default_rng([self.seed, r]).permutation(self.size)
            yield int(r * self.size + perm[p])
            i += 1
