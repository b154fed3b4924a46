"""Random streams named by a domain and a tuple of integers.

torch's CPU generator keeps only the low 32 bits of its seed (``manual_seed(5)``
and ``manual_seed(2**32 + 5)`` give the same numbers), so packing several keys
into one integer by shifts silently drops all but the lowest. Here the domain
and the keys are hashed by NumPy's ``SeedSequence`` into the 32 bits torch uses.
Each key enters as its own two 32-bit words, after the domain and the number of
keys, so different (domain, keys) give unrelated streams (up to the 1 in 2^32
chance of two hashes meeting), and the same ones the same stream on every machine.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

_WORD = (1 << 32) - 1


def stream(domain: str, *keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded from ``domain`` (e.g. "train") and non-negative integer ``keys`` (< 2^64)."""
    if any(not 0 <= k < 1 << 64 for k in keys):
        raise ValueError(f"stream keys must be in [0, 2^64), got {keys}")
    words = [zlib.crc32(domain.encode()), len(keys)] + [w for k in keys for w in (k & _WORD, k >> 32)]
    seed = int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])
    return torch.Generator().manual_seed(seed)
