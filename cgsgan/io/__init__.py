"""Scene files: 3DGS PLY and antimatter15 .splat, in our y-up frame or y-down.

See :mod:`cgsgan.io.ply`, :mod:`cgsgan.io.splat` and :mod:`cgsgan.io.frames`.
"""

from cgsgan.io.frames import to_frame
from cgsgan.io.ply import read_ply, write_ply
from cgsgan.io.splat import read_splat, write_splat

__all__ = [
    "read_ply",
    "read_splat",
    "to_frame",
    "write_ply",
    "write_splat",
]
