"""Files: 3DGS PLY and .splat scenes (y-up or y-down), network checkpoints, official snapshots.

See :mod:`cgsgan.io.ply`, :mod:`cgsgan.io.splat`, :mod:`cgsgan.io.frames`,
:mod:`cgsgan.io.checkpoint` and :mod:`cgsgan.io.official`.
"""

from cgsgan.io.checkpoint import convert_official, load_network, read_state_dicts, save_networks
from cgsgan.io.frames import to_frame
from cgsgan.io.official import read_official_snapshot
from cgsgan.io.ply import read_ply, write_ply
from cgsgan.io.splat import read_splat, write_splat

__all__ = [
    "convert_official",
    "load_network",
    "read_official_snapshot",
    "read_state_dicts",
    "save_networks",
    "read_ply",
    "read_splat",
    "to_frame",
    "write_ply",
    "write_splat",
]
