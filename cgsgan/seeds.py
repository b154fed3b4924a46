"""Random streams named by tuples of integers.

torch's CPU generator keeps only the low 32 bits of its seed (``manual_seed(5)``
and ``manual_seed(2**32 + 5)`` give the same numbers), so packing several keys
into one integer by shifts silently drops all but the lowest. Here the keys are
hashed by NumPy's ``SeedSequence`` into the 32 bits torch uses: different keys
give unrelated streams, the same keys the same stream on every machine.
"""

from __future__ import annotations

import numpy as np
import torch


def stream(*keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded from the non-negative integers ``keys``."""
    if any(k < 0 for k in keys):
        raise ValueError(f"stream keys must be non-negative, got {keys}")
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint32)[0])
    return torch.Generator().manual_seed(seed)
