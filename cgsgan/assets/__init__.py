"""Files shipped inside the package: the built-in network.

``tiny64-synthetic-heads.safetensors`` is the G_ema of the CPU training run that
the README's "Evidence of learning" describes (preset tiny64, 64^2, trained on the
built-in synthetic heads; figures in docs/training/), stored in float16 (5 MB).
It is what commands and ``load_network()`` use when no network is given.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_NETWORK = "tiny64-synthetic-heads.safetensors"


def default_network() -> Path:
    """Path of the built-in network; a clear error if this installation lacks it."""
    path = Path(__file__).with_name(DEFAULT_NETWORK)
    if not path.is_file():
        raise FileNotFoundError(f"the built-in network {DEFAULT_NETWORK} is missing from this installation; "
                                "reinstall cgsgan or pass a network file")  # fmt: skip
    return path
