"""Files: 3DGS scenes (PLY, PlayCanvas compressed PLY, .splat, Niantic .spz), network checkpoints, official snapshots.

See :mod:`cgsgan.io.ply`, :mod:`cgsgan.io.compressed_ply`, :mod:`cgsgan.io.splat`,
:mod:`cgsgan.io.spz`, :mod:`cgsgan.io.frames`, :mod:`cgsgan.io.checkpoint` and
:mod:`cgsgan.io.official`.
"""

from cgsgan.io.checkpoint import convert_official, load_network, read_state_dicts, save_networks
from cgsgan.io.compressed_ply import is_compressed_ply, read_compressed_ply, write_compressed_ply
from cgsgan.io.frames import to_frame
from cgsgan.io.official import read_official_snapshot
from cgsgan.io.ply import read_ply, write_ply
from cgsgan.io.splat import read_splat, write_splat
from cgsgan.io.spz import SpzHeader, read_spz, read_spz_header, write_spz

__all__ = [
    "SpzHeader",
    "convert_official",
    "is_compressed_ply",
    "load_network",
    "read_compressed_ply",
    "read_official_snapshot",
    "read_state_dicts",
    "save_networks",
    "read_ply",
    "read_splat",
    "read_spz",
    "read_spz_header",
    "to_frame",
    "write_compressed_ply",
    "write_ply",
    "write_splat",
    "write_spz",
]
