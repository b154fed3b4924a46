"""PlayCanvas ``.compressed.ply``: 3DGS scenes quantised in chunks of 256 (16 bytes a Gaussian).

The layout read by the PlayCanvas engine, SuperSplat and splat-transform: a
binary little-endian PLY with two elements (a third, ``sh``, holds uint8
higher-order SH and is absent for our degree-0 scenes):

    element chunk  ceil(N / 256)    float32 min_x min_y min_z max_x max_y max_z,
                                    min_scale_x/y/z max_scale_x/y/z,
                                    min_r min_g min_b max_r max_g max_b
    element vertex N                uint32 packed_position packed_rotation
                                    packed_scale packed_color

Gaussian i belongs to chunk i // 256, whose bounds span its 256 Gaussians.
Each quantity is mapped to t in [0, 1] between the chunk's min and max (t = 0
when they are equal) and stored as round(t * (2**bits - 1)):

* ``packed_position``: x 11 bits (31-21), y 10 bits (20-11), z 11 bits (10-0);
* ``packed_scale``: the log-scales the same way (bounds clipped to [-20, 20]);
* ``packed_color``: r, g, b = 0.5 + C0 * f_dc between the chunk's colour
  bounds, 8 bits each (31-24, 23-16, 15-8), then sigmoid(opacity) in [0, 1]
  as 8 bits (7-0);
* ``packed_rotation``: the unit quaternion in PLY order (w, x, y, z); bits
  30-31 index its largest |component|, which is made positive and dropped;
  the other three, each in [-1/sqrt(2), 1/sqrt(2)], follow in index order as
  10 bits of c / sqrt(2) + 0.5 (bits 29-20, 19-10, 9-0).

Readers also accept chunks without colour bounds (12 properties; colours are
then stored as plain 8-bit rgb). Before packing, the writer sorts the
Gaussians along a Morton (z-order) curve of their positions, as splat-transform
does, so that each chunk covers a small box; :func:`morton_order` gives that
permutation (``sort=False`` keeps the input order, at a cost in precision).
``up`` selects the stored frame exactly as for plain PLY (splat-transform
treats both alike, so a head opens the same way from either).

**Quantisation error** of a round trip (write then read, Gaussians matched
through :func:`morton_order`), measured on the built-in network's head by
``python benchmarks/formats.py`` (``load_network()``, ``torch.manual_seed(0)``,
z = randn, psi = 0.8: 5376 Gaussians, 21 chunks, extent 0.687), activated
units, each Gaussian's worst component, max / mean over Gaussians:

    ======================  ==================  =====================================
    field                   compressed PLY      bound
    ======================  ==================  =====================================
    position (units/axis)   2.5e-4 / 7.0e-5     chunk span / 4094 (x, z), / 2046 (y)
    position / extent       3.7e-4 / 1.0e-4
    scale (relative)        0.36% / 0.11%       e**(log-scale span / 4094 or 2046) - 1
    opacity                 0.0020 / 0.0010     1/510
    rgb (clamped at 0)      0.0074 / 0.0016     chunk rgb span / 510
    rotation (degrees)      0.21 / 0.087        0.57 (components within sqrt(2)/2046)
    ======================  ==================  =====================================

File size for this head: 88 KB (16 bytes a Gaussian + 72 a chunk + header).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from cgsgan.atomic import atomic_write
from cgsgan.gaussians import SH_C0, GaussianScene
from cgsgan.io.frames import check_up, to_frame
from cgsgan.io.ply import _parse, check_readable, logit, scene_from_arrays, scene_sample_arrays, sigmoid

__all__ = ["is_compressed_ply", "morton_order", "read_compressed_ply", "write_compressed_ply"]

CHUNK_SIZE = 256
POSITION_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
SCALE_BOUNDS = ("min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")
COLOR_BOUNDS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
CHUNK_PROPERTIES = POSITION_BOUNDS + SCALE_BOUNDS + COLOR_BOUNDS
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SCALE_LIMIT = 20.0  # log-scale bounds are clipped to [-20, 20], as splat-transform does
BITS_111011 = (11, 10, 11)
SHIFTS_111011 = (21, 11, 0)


# ------------------------------------------------------------------ helpers
def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] floats -> round(t * (2**bits - 1)) as uint32, clipped."""
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _chunked(values: np.ndarray) -> np.ndarray:
    """[N, k] -> [C, 256, k], the last chunk padded by repeating its last row (neutral for min/max)."""
    n = values.shape[0]
    pad = -n % CHUNK_SIZE
    if pad:
        values = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)])
    return values.reshape(-1, CHUNK_SIZE, values.shape[1])


def _normalise(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """values [N, k] to t in [0, 1] between per-chunk bounds lo/hi [C, k]; 0 where the range is empty."""
    index = np.arange(values.shape[0]) // CHUNK_SIZE
    lo, hi = lo[index], hi[index]
    span = hi - lo
    t = np.where(span > 0, (values - lo) / np.where(span > 0, span, 1.0), 0.0)
    return np.clip(t, 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    out = np.zeros(t.shape[0], np.uint32)
    for axis, (bits, shift) in enumerate(zip(BITS_111011, SHIFTS_111011, strict=True)):
        out |= _unorm(t[:, axis], bits) << np.uint32(shift)
    return out


def _unpack_111011(code: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            ((code >> shift) & ((1 << bits) - 1)) / ((1 << bits) - 1)
            for bits, shift in zip(BITS_111011, SHIFTS_111011, strict=True)
        ],
        axis=-1,
    )


def _pack_rotations(rotation: np.ndarray) -> np.ndarray:
    """wxyz quaternions [N, 4] of any norm (zero: identity) -> 2-10-10-10 smallest-three codes."""
    q = rotation.astype(np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    n = q.shape[0]
    largest = np.argmax(np.abs(q), axis=-1)  # first index on ties
    q = np.where(q[np.arange(n), largest][:, None] < 0, -q, q)
    code = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        code = np.where(keep, (code << np.uint32(10)) | _unorm(q[:, i] * math.sqrt(0.5) + 0.5, 10), code)
    return code


def _unpack_rotations(code: np.ndarray) -> np.ndarray:
    """2-10-10-10 codes [N] -> unit wxyz quaternions [N, 4] float64."""
    n = code.shape[0]
    abc = [((code >> np.uint32(shift)) & 1023) / 1023.0 for shift in (20, 10, 0)]
    abc = [(v - 0.5) * math.sqrt(2.0) for v in abc]
    m = np.sqrt(np.maximum(0.0, 1.0 - sum(v * v for v in abc)))
    largest = (code >> np.uint32(30)).astype(np.int64)
    q = np.empty((n, 4))
    for which in range(4):
        row = largest == which
        parts = list(abc)
        parts.insert(which, m)
        q[row] = np.stack(parts, axis=-1)[row]
    return q


def morton_order(xyz: np.ndarray) -> np.ndarray:
    """Indices [N] sorting positions [N, 3] along a 10-bit-per-axis Morton curve of their bounding box.

    The order :func:`write_compressed_ply` stores Gaussians in (stable for ties).
    """
    xyz = np.asarray(xyz, np.float64)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cell = np.clip(np.floor((xyz - lo) / span * 1024), 0, 1023).astype(np.uint64)
    code = np.zeros(xyz.shape[0], np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cell[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


# -------------------------------------------------------------------- write
def write_compressed_ply(
    path: str | os.PathLike, scene: GaussianScene, sample: int = 0, up: str = "y", sort: bool = True
) -> Path:
    """Write sample ``sample`` of ``scene`` as a PlayCanvas .compressed.ply (16 bytes a Gaussian + chunks).

    ``sort`` (default) stores the Gaussians in :func:`morton_order`, which keeps
    each chunk's bounds small; ``up`` is the stored frame as for PLY. Returns the path.
    """
    a = scene_sample_arrays(scene, sample, up)
    if sort:
        order = morton_order(a["xyz"])
        a = {name: value[order] for name, value in a.items()}
    xyz = a["xyz"].astype(np.float64)
    scale = a["scale"].astype(np.float64)
    rgb = 0.5 + SH_C0 * a["color"].astype(np.float64)

    chunks = {}
    columns = {}
    for name, values, bounds, limit in (
        ("position", xyz, POSITION_BOUNDS, None),
        ("scale", scale, SCALE_BOUNDS, SCALE_LIMIT),
        ("color", rgb, COLOR_BOUNDS, None),
    ):
        blocks = _chunked(values)
        lo, hi = blocks.min(axis=1), blocks.max(axis=1)
        if limit is not None:
            lo, hi = np.clip(lo, -limit, limit), np.clip(hi, -limit, limit)
        # Bounds are stored as float32: normalise against what the reader will see.
        lo, hi = lo.astype(np.float32).astype(np.float64), hi.astype(np.float32).astype(np.float64)
        for axis in range(3):
            chunks[bounds[axis]], chunks[bounds[axis + 3]] = lo[:, axis], hi[:, axis]
        columns[name] = _normalise(values, lo, hi)

    n = xyz.shape[0]
    vertex = np.empty(n, dtype=[(p, "<u4") for p in VERTEX_PROPERTIES])
    vertex["packed_position"] = _pack_111011(columns["position"])
    vertex["packed_scale"] = _pack_111011(columns["scale"])
    vertex["packed_rotation"] = _pack_rotations(a["rotation"])
    colour = columns["color"]
    opacity = _unorm(sigmoid(a["opacity"][:, 0]), 8)
    vertex["packed_color"] = (
        (_unorm(colour[:, 0], 8) << np.uint32(24))
        | (_unorm(colour[:, 1], 8) << np.uint32(16))
        | (_unorm(colour[:, 2], 8) << np.uint32(8))
        | opacity
    )
    chunk = np.empty(len(chunks["min_x"]), dtype=[(p, "<f4") for p in CHUNK_PROPERTIES])
    for p in CHUNK_PROPERTIES:
        chunk[p] = chunks[p]
    ply = PlyData(
        [PlyElement.describe(chunk, "chunk"), PlyElement.describe(vertex, "vertex")],
        text=False,
        byte_order="<",
        comments=["Generated by cgsgan (PlayCanvas compressed 3DGS layout)"],
    )
    return atomic_write(path, ply.write)


# --------------------------------------------------------------------- read
def _layout_problem(ply: PlyData) -> str | None:
    """Why ``ply`` is not a compressed PLY, or None if it is one."""
    elements = {e.name: e for e in ply.elements}
    if "chunk" not in elements or "vertex" not in elements:
        return f"it needs 'chunk' and 'vertex' elements, found {[e.name for e in ply.elements]}"
    chunk, vertex = elements["chunk"].data, elements["vertex"].data
    names = chunk.dtype.names or ()
    wanted = POSITION_BOUNDS + SCALE_BOUNDS + (COLOR_BOUNDS if "min_r" in names else ())
    missing = [p for p in wanted if p not in names]
    if missing or any(chunk.dtype[p].kind != "f" for p in wanted):
        return f"its chunk element lacks float properties {' '.join(missing) or '(wrong types)'}"
    names = vertex.dtype.names or ()
    missing = [p for p in VERTEX_PROPERTIES if p not in names]
    if missing or any(vertex.dtype[p] != np.dtype("<u4") and vertex.dtype[p] != np.dtype(">u4") for p in names):
        return f"its vertex element needs uint32 {' '.join(VERTEX_PROPERTIES)}"
    if len(chunk) != -(-len(vertex) // CHUNK_SIZE):
        return f"{len(chunk)} chunks do not cover {len(vertex)} Gaussians in chunks of {CHUNK_SIZE}"
    return None


def is_compressed_ply(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PLY with the compressed layout (reads the header only; False if unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    if not head.startswith(b"ply"):
        return False
    header = head.split(b"end_header", 1)[0]
    return b"element chunk " in header and b"packed_position" in header


def read_compressed_ply(path: str | os.PathLike, up: str = "y") -> GaussianScene:
    """Read a PlayCanvas .compressed.ply into a B = 1 float32 scene in our frame (in file order).

    Raises FileNotFoundError for a missing file and ValueError naming the file
    when it is not a (complete) PLY in the compressed layout.
    """
    check_up(up)
    path = check_readable(path, "compressed PLY")
    ply = _parse(path)
    problem = _layout_problem(ply)
    if problem:
        raise ValueError(f"{path}: not a PlayCanvas compressed PLY: {problem}")
    chunk, vertex = ply["chunk"].data, ply["vertex"].data
    n = len(vertex)
    if n == 0:
        raise ValueError(f"{path}: compressed PLY has no Gaussians (0 vertices)")
    index = np.arange(n) // CHUNK_SIZE

    def bounds(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        values = np.stack([chunk[p].astype(np.float64) for p in names], axis=-1)[index]
        return values[:, :3], values[:, 3:]

    def lerp(t: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        lo, hi = bounds(names)
        return lo * (1.0 - t) + hi * t

    colour = vertex["packed_color"].astype(np.uint32)
    rgb = np.stack([((colour >> np.uint32(s)) & 255) / 255.0 for s in (24, 16, 8)], axis=-1)
    if "min_r" in (chunk.dtype.names or ()):
        rgb = lerp(rgb, COLOR_BOUNDS)
    if "sh" in ply and any(np.any(ply["sh"].data[p] != 128) for p in ply["sh"].data.dtype.names or ()):
        warnings.warn(
            f"{path}: dropped the compressed PLY's higher-order SH coefficients; GaussianScene is SH degree 0",
            UserWarning,
            stacklevel=2,
        )
    arrays = {
        "xyz": lerp(_unpack_111011(vertex["packed_position"].astype(np.uint32)), POSITION_BOUNDS),
        "scale": lerp(_unpack_111011(vertex["packed_scale"].astype(np.uint32)), SCALE_BOUNDS),
        "rotation": _unpack_rotations(vertex["packed_rotation"].astype(np.uint32)),
        "opacity": logit((colour & 255).astype(np.float64)[:, None] / 255.0),
        "color": (rgb - 0.5) / SH_C0,
    }
    return to_frame(scene_from_arrays(arrays), up, inverse=True)
