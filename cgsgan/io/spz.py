"""Niantic's ``.spz`` format (MIT): gzip-compressed, quantised 3DGS scenes (~10x smaller than PLY).

Versions 1-3 are one gzip stream holding a 16-byte little-endian header and
then the Gaussian data, attribute by attribute (all positions, then all
alphas, ...):

    header     magic u32 = 0x5053474E ("NGSP"), version u32, point count u32,
               SH degree u8, fractional bits u8, flags u8 (0x1 antialiased,
               0x2 extensions follow the header), reserved u8 (0)
    positions  N x 3 x 3 bytes: 24-bit two's-complement fixed point,
               round(x * 2**fractional_bits); version 1: N x 3 float16
    alphas     N bytes: round(sigmoid(opacity) * 255)
    colours    N x 3 bytes: round(f_dc * 0.15 * 255 + 127.5), i.e. the SH DC
               coefficient with Niantic's colour scale 0.15 (not C0 = 0.282, so
               colours a bit outside [0, 1] survive): f_dc in [-3.33, 3.33],
               rgb = 0.5 + C0 * f_dc in [-0.44, 1.44]
    scales     N x 3 bytes: round((log-scale + 10) * 16), log-scales [-10, 5.94]
    rotations  version <= 2: N x 3 bytes, round(q * 127.5 + 127.5) of x, y, z
               of the unit quaternion with w >= 0 (w = sqrt(1 - |xyz|^2));
               version 3: N x u32 "smallest three": bits 30-31 index (x, y, z,
               w order) of the largest |component|, made positive and dropped;
               the other three in index order as 10 bits each (sign bit 9,
               magnitude round(|c| * sqrt(2) * 511) in bits 0-8), the first
               in the highest bits
    sh         N x 3 x (degree 1-3: 3 / 8 / 15) bytes, round(c * 128 + 128),
               absent for our degree-0 scenes

Bytes are rounded half away from zero and clipped to [0, 255]; positions out
of the 24-bit range raise ValueError (lower ``fractional_bits``). We write
version 2 by default, the newest that aras-p's Unity Gaussian-splatting plugin
reads, or 3 (``version=3``, better rotations). We read versions 1-3, and
version 4 (an uncompressed 32-byte header and a table of per-attribute zstd
streams, splat-transform's default output) when the ``zstandard`` package is
installed; otherwise it raises a ValueError naming the version. Higher SH
degrees are read and dropped with a warning, as for PLY.

**Frame.** The spz specification stores right-up-back (RUB, OpenGL) axes and
calls PLY right-down-front (RDF); Niantic's library and splat-transform both
convert between the two by negating y and z (``splat-transform in.spz out.ply``
flips, ``out.ply -> .spz`` flips back). ``up`` is therefore the frame of the
*PLY-equivalent* scene, exactly as for :func:`cgsgan.io.write_ply`:

* ``up="y"`` (default): ``splat-transform head.spz head.ply`` yields the same
  coordinates as our ``write_ply(..., up="y")``, so the .spz opens in
  splat-transform (and viewers that load through the same PLY/RDF convention,
  such as SuperSplat) exactly as our PLY does. The raw RUB payload holds
  (x, -y, -z) of our frame.
* ``up="-y"``: the PLY-equivalent is the y-down (COLMAP) one, and the raw
  payload holds our frame as is, which is already RUB (x right, y up, face
  toward +z = back): upright in a viewer that renders spz as RUB directly.

**Quantisation error** of a round trip (write then read, default frame),
measured on the built-in network's head by ``python benchmarks/formats.py``
(``load_network()``, ``torch.manual_seed(0)``, z = randn, psi = 0.8: 5376
Gaussians, extent 0.687), in activated units, each Gaussian's worst component,
max / mean over Gaussians, next to the bound that the format's steps guarantee
(half a step per stored value):

    ======================  ==================  ==================  =================
    field                   version 2           version 3           bound (v2 / v3)
    ======================  ==================  ==================  =================
    position (units/axis)   1.22e-4 / 9.1e-5    1.22e-4 / 9.1e-5    2**-13 = 1.22e-4
    position / extent       1.8e-4 / 1.3e-4     1.8e-4 / 1.3e-4     (12 fract. bits)
    scale (relative)        3.2% / 2.2%         3.2% / 2.2%         e**(1/32)-1 = 3.2%
    opacity                 0.0020 / 0.0010     0.0020 / 0.0010     1/510
    rgb (clamped at 0)      0.0037 / 0.0013     0.0037 / 0.0013     C0/76.5 = 0.0037
    rotation (degrees)      9.3 / 0.61          0.23 / 0.087        13.4 / 0.57
    ======================  ==================  ==================  =================

rgb holds inside the stored range (SH DC within +-3.33, i.e. rgb in [-0.44,
1.44]); values outside it are clipped there: darker-than-black ones invisibly
(the renderer clamps at 0), brighter ones visibly (3 of the built-in
head's 5,376 Gaussians have a channel above 1.44, up to 1.59). Log-scales are
clamped to [-10, 5.94] likewise: 15 of that head's Gaussians are flat discs
with an axis thinner than e^-10 = 4.5e-5 units, stored at that floor (left
out of the scale row). Version 2
recovers w from x, y, z (each within 1/255), so a Gaussian whose w is near 0
can turn by up to 13.4 degrees; version 3 recovers the largest component
(>= 1/2) from three stored within sqrt(2)/1022. File
sizes for this head: version 2 71 KB, version 3 77 KB (full PLY 1.3 MB).
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgsgan.atomic import atomic_write
from cgsgan.gaussians import GaussianScene
from cgsgan.io.frames import check_up, to_frame
from cgsgan.io.ply import check_readable, logit, scene_from_arrays, scene_sample_arrays, sigmoid

__all__ = ["SpzHeader", "read_spz", "read_spz_header", "write_spz"]

SPZ_MAGIC = 0x5053474E  # b"NGSP" little endian
HEADER = struct.Struct("<IIIBBBB")  # versions 1-3, inside the gzip stream
HEADER_V4 = struct.Struct("<IIIBBBBI12x")  # version 4, uncompressed
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
COLOR_SCALE = 0.15
DEFAULT_FRACTIONAL_BITS = 12
WRITE_VERSIONS = (2, 3)
SH_DIMS = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}  # SH coefficients per channel beyond DC
MAX_POINTS = 10_000_000  # Niantic's reader refuses more; also bounds a gzip bomb
GZIP_MAGIC = b"\x1f\x8b"
# The PLY-equivalent frame ``up`` -> the frame of the raw (RUB) payload, see the module docs.
STORED_FRAME = {"y": "-y", "-y": "y"}


@dataclass(frozen=True)
class SpzHeader:
    """The header fields of an .spz file (version 4: plus its stream count)."""

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    flags: int
    reserved: int = 0

    @property
    def antialiased(self) -> bool:
        """Whether the scene was trained with antialiasing (flag 0x1)."""
        return bool(self.flags & FLAG_ANTIALIASED)


# ------------------------------------------------------------------ helpers
def _round_bytes(values: np.ndarray) -> np.ndarray:
    """float64 -> uint8 like Niantic's toUint8: round half away from zero, clip to [0, 255]."""
    return np.clip(np.trunc(values + np.copysign(0.5, values)), 0, 255).astype(np.uint8)


def _unit_quaternions_xyzw(rotation: np.ndarray) -> np.ndarray:
    """wxyz quaternions [N, 4] of any norm -> unit xyzw float64; a zero quaternion becomes identity."""
    q = rotation.astype(np.float64)[:, [1, 2, 3, 0]]
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([0.0, 0.0, 0.0, 1.0]))


def _pack_rotations_v2(q: np.ndarray) -> np.ndarray:
    """Unit xyzw [N, 4] -> [N, 3] bytes: x, y, z of the representative with w >= 0."""
    q = np.where(q[:, 3:] < 0, -q, q)
    return _round_bytes(q[:, :3] * 127.5 + 127.5)


def _unpack_rotations_v2(b: np.ndarray) -> np.ndarray:
    xyz = b.astype(np.float64) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(-1, keepdims=True)))
    return np.concatenate([xyz, w], axis=-1)


def _pack_rotations_v3(q: np.ndarray) -> np.ndarray:
    """Unit xyzw [N, 4] -> u32 [N] smallest-three codes (see the module docs)."""
    n = q.shape[0]
    largest = np.argmax(np.abs(q), axis=-1)  # first index on ties, as Niantic's loop
    q = np.where(q[np.arange(n), largest][:, None] < 0, -q, q)
    code = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        mag = np.minimum(np.floor(np.abs(q[:, i]) * (511.0 * np.sqrt(2.0)) + 0.5), 511).astype(np.uint32)
        part = ((q[:, i] < 0).astype(np.uint32) << 9) | mag
        code = np.where(keep, (code << 10) | part, code)
    return code


def _unpack_rotations_v3(code: np.ndarray) -> np.ndarray:
    code = code.astype(np.uint32)
    largest = (code >> 30).astype(np.int64)
    q = np.zeros((code.shape[0], 4))
    for i in range(3, -1, -1):
        keep = largest != i
        value = (code & 511).astype(np.float64) * (np.sqrt(0.5) / 511.0)
        value = np.where((code >> 9) & 1, -value, value)
        q[:, i] = np.where(keep, value, 0.0)
        code = np.where(keep, code >> 10, code)
    rest = (q * q).sum(-1)
    q[np.arange(q.shape[0]), largest] = np.sqrt(np.maximum(0.0, 1.0 - rest))
    return q


def _section_sizes(n: int, version: int, sh_degree: int) -> list[tuple[str, int]]:
    """(name, bytes) of the attribute sections in file order."""
    return [
        ("positions", n * 3 * (2 if version == 1 else 3)),
        ("alphas", n),
        ("colors", n * 3),
        ("scales", n * 3),
        ("rotations", n * (4 if version >= 3 else 3)),
        ("sh", n * 3 * SH_DIMS[sh_degree]),
    ]


# -------------------------------------------------------------------- write
def write_spz(
    path: str | os.PathLike,
    scene: GaussianScene,
    sample: int = 0,
    up: str = "y",
    version: int = 2,
    fractional_bits: int = DEFAULT_FRACTIONAL_BITS,
    antialiased: bool = False,
) -> Path:
    """Write sample ``sample`` of ``scene`` as a gzip .spz file; returns the path.

    ``version`` 2 (default; 3-byte rotations, read by every spz reader) or 3
    (32-bit smallest-three rotations). ``up`` is the PLY-equivalent frame (see
    the module docs: the default opens like our default PLY in splat-transform).
    ``fractional_bits`` (0-23) sets the position step 2**-bits; 12 (0.24e-3
    units) is Niantic's choice and covers |x| < 2048. ``antialiased`` sets
    header flag 0x1 (our generator renders without the mip filter: False).
    Raises ValueError for a bad argument or a position out of the 24-bit range.
    """
    if version not in WRITE_VERSIONS:
        raise ValueError(f"spz version must be one of {WRITE_VERSIONS}, got {version!r}")
    if isinstance(fractional_bits, bool) or not isinstance(fractional_bits, int) or not 0 <= fractional_bits <= 23:
        raise ValueError(f"fractional_bits must be an integer in [0, 23], got {fractional_bits!r}")
    check_up(up)
    a = scene_sample_arrays(scene, sample, STORED_FRAME[up])
    n = a["xyz"].shape[0]

    fixed = a["xyz"].astype(np.float64) * float(1 << fractional_bits)
    fixed = np.trunc(fixed + np.copysign(0.5, fixed)).astype(np.int64)
    limit = (1 << 23) - 1
    if np.abs(fixed).max() > limit:
        far = float(np.abs(a["xyz"]).max())
        raise ValueError(
            f"a position coordinate of {far:.6g} does not fit spz's 24-bit fixed point with "
            f"{fractional_bits} fractional bits (|x| < {limit / (1 << fractional_bits):.6g}); "
            "lower fractional_bits"
        )
    positions = (fixed.astype("<i4").view(np.uint8).reshape(n, 3, 4)[:, :, :3]).copy()
    alphas = _round_bytes(sigmoid(a["opacity"][:, 0]) * 255.0)
    colors = _round_bytes(a["color"].astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5)
    scales = _round_bytes((a["scale"].astype(np.float64) + 10.0) * 16.0)
    q = _unit_quaternions_xyzw(a["rotation"])
    rotations = _pack_rotations_v2(q) if version == 2 else _pack_rotations_v3(q).astype("<u4")

    flags = FLAG_ANTIALIASED if antialiased else 0
    header = HEADER.pack(SPZ_MAGIC, version, n, 0, fractional_bits, flags, 0)
    payload = b"".join([header] + [x.tobytes() for x in (positions, alphas, colors, scales, rotations)])
    # mtime=0: the same scene always gives the same bytes.
    data = gzip.compress(payload, compresslevel=6, mtime=0)
    return atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------- read
def _gunzip_exact(path: Path, raw: bytes) -> tuple[SpzHeader, bytes]:
    """Header and attribute bytes of a gzip (version 1-3) file, decompressing no more than they need."""
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = stream.decompress(raw, HEADER.size)
        if len(head) < HEADER.size:
            raise ValueError(f"{path}: spz data ends inside the 16-byte header ({len(head)} bytes)")
        magic, version, n, sh_degree, bits, flags, reserved = HEADER.unpack(head)
        header = _check_header(path, SpzHeader(version, n, sh_degree, bits, flags, reserved), magic)
        if not 1 <= version <= 3:
            raise ValueError(f"{path}: a gzip-compressed spz file must be version 1-3, but the header says {version}")
        if flags & FLAG_EXTENSIONS:
            raise ValueError(f"{path}: spz extensions (header flag 0x2) are not supported")
        need = sum(size for _, size in _section_sizes(n, version, sh_degree))
        body = stream.decompress(stream.unconsumed_tail, need) if need else b""
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt gzip stream in spz file ({e})") from e
    if len(body) < need:
        raise ValueError(
            f"{path}: spz data is truncated: {n} Gaussians need {need} bytes after the header, found {len(body)}"
        )
    return header, body


def _zstd_decompress(data: bytes, size: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise ImportError("zstandard") from None
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)


def _read_v4(path: Path, raw: bytes) -> tuple[SpzHeader, bytes]:
    """Header and attribute bytes of a version-4 file (uncompressed header, TOC, one zstd stream each)."""
    if len(raw) < HEADER_V4.size:
        raise ValueError(f"{path}: spz file ends inside its 32-byte header ({len(raw)} bytes)")
    magic, version, n, sh_degree, bits, flags, streams, toc = HEADER_V4.unpack_from(raw)
    header = _check_header(path, SpzHeader(version, n, sh_degree, bits, flags), magic)
    if version != 4:
        raise ValueError(f"{path}: spz version {version} is not supported (this reader knows versions 1-4)")
    sections = [(name, size) for name, size in _section_sizes(n, 4, sh_degree) if size]
    if streams != len(sections) or toc < HEADER_V4.size or toc + 16 * streams > len(raw):
        raise ValueError(f"{path}: malformed spz version 4 stream table ({streams} streams at offset {toc})")
    parts, offset = [], toc + 16 * streams
    for i, (name, size) in enumerate(sections):
        packed, unpacked = struct.unpack_from("<QQ", raw, toc + 16 * i)
        if unpacked != size or offset + packed > len(raw):
            raise ValueError(f"{path}: spz version 4 stream {name!r} is truncated or has the wrong size")
        try:
            part = _zstd_decompress(raw[offset : offset + packed], size)
        except ImportError:
            raise ValueError(
                f"{path}: spz version 4 (zstd streams) needs the zstandard package: pip install zstandard"
            ) from None
        except Exception as e:  # zstandard.ZstdError
            raise ValueError(f"{path}: corrupt zstd stream {name!r} in spz file ({e})") from e
        if len(part) != size:
            raise ValueError(f"{path}: spz version 4 stream {name!r} holds {len(part)} bytes, expected {size}")
        parts.append(part)
        offset += packed
    return header, b"".join(parts)


def _check_header(path: Path, header: SpzHeader, magic: int) -> SpzHeader:
    if magic != SPZ_MAGIC:
        raise ValueError(f"{path}: not an spz file (header magic 0x{magic:08x}, expected 0x{SPZ_MAGIC:08x} 'NGSP')")
    if header.version < 1:
        raise ValueError(f"{path}: spz version {header.version} is not supported (this reader knows versions 1-4)")
    if header.num_points == 0:
        raise ValueError(f"{path}: spz file has no Gaussians (point count 0)")
    if header.num_points > MAX_POINTS:
        raise ValueError(f"{path}: spz point count {header.num_points} exceeds the limit of {MAX_POINTS}")
    if header.sh_degree not in SH_DIMS:
        raise ValueError(f"{path}: unsupported spz SH degree {header.sh_degree}")
    if header.fractional_bits > 24:
        raise ValueError(f"{path}: invalid spz fractional bits {header.fractional_bits} (at most 24)")
    return header


def _read_payload(path: str | os.PathLike) -> tuple[Path, SpzHeader, bytes]:
    path = check_readable(path, "spz")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        return (path, *_gunzip_exact(path, raw))
    if raw[:4] == struct.pack("<I", SPZ_MAGIC):
        return (path, *_read_v4(path, raw))
    raise ValueError(f"{path}: not an spz file (neither a gzip stream nor an 'NGSP' version-4 header)")


def read_spz_header(path: str | os.PathLike) -> SpzHeader:
    """The header of an .spz file (any version 1-4); ValueError naming the file if it is not one."""
    return _read_payload(path)[1]


def read_spz(path: str | os.PathLike, up: str = "y") -> GaussianScene:
    """Read an .spz file (versions 1-3; 4 with ``zstandard``) into a B = 1 float32 scene in our frame.

    ``up`` is the PLY-equivalent frame the file was written for (see the module
    docs). Raises FileNotFoundError for a missing file and ValueError naming
    the file for anything else: not spz, unknown version, truncated or corrupt data.
    """
    check_up(up)
    path, header, body = _read_payload(path)
    n, version = header.num_points, header.version
    sections, offset = {}, 0
    for name, size in _section_sizes(n, version, header.sh_degree):
        sections[name] = np.frombuffer(body, np.uint8, size, offset)
        offset += size

    if version == 1:
        xyz = sections["positions"].view("<f2").reshape(n, 3).astype(np.float64)
    else:
        b = sections["positions"].reshape(n, 3, 3).astype(np.int32)
        fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        xyz = fixed.astype(np.float64) / float(1 << header.fractional_bits)
    if version >= 3:
        q = _unpack_rotations_v3(sections["rotations"].view("<u4"))
    else:
        q = _unpack_rotations_v2(sections["rotations"].reshape(n, 3))
    if header.sh_degree and np.any(sections["sh"] != 128):
        warnings.warn(
            f"{path}: dropped SH degree {header.sh_degree} coefficients; GaussianScene is SH degree 0, "
            "so the colours lose their view dependence",
            UserWarning,
            stacklevel=2,
        )
    arrays = {
        "xyz": xyz,
        "scale": sections["scales"].reshape(n, 3) / 16.0 - 10.0,
        "rotation": q[:, [3, 0, 1, 2]],
        "opacity": logit(sections["alphas"].reshape(n, 1) / 255.0),
        "color": (sections["colors"].reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE,
    }
    return to_frame(scene_from_arrays(arrays), STORED_FRAME[up], inverse=True)
