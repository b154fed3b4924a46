"""Compressed scene formats: Niantic .spz (versions 1-4) and PlayCanvas .compressed.ply, and conversion.

Round trips are checked against bounds derived from each format's quantisation
step (half a step per stored value), not from the encoder itself. When
installed, gsply (PyPI) and splat-transform (npm, see .ci/run) act as
independent readers and writers.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from cgsgan.apps.files import SCENE_SUFFIXES, convert_file, read_scene, write_scene
from cgsgan.gaussians import SH_C0, GaussianScene
from cgsgan.io import (
    is_compressed_ply,
    read_compressed_ply,
    read_ply,
    read_spz,
    read_spz_header,
    write_compressed_ply,
    write_ply,
    write_spz,
)
from cgsgan.io.compressed_ply import morton_order

REPO = Path(__file__).resolve().parents[1]

# Half a quantisation step of each stored value (the formats' definitions, see the module docs).
SPZ_POSITION = 0.5 / 2**12  # 24-bit fixed point, 12 fractional bits
SPZ_LOG_SCALE = 0.5 / 16  # uint8 of (log-scale + 10) * 16
SPZ_LOG_SCALE_RANGE = (-10.0, 255 / 16 - 10)  # what a byte holds; log-scales outside come back clamped
OPACITY = 0.5 / 255  # uint8 of sigmoid(opacity) (both formats)
SPZ_SH_DC = 0.5 / (0.15 * 255)  # uint8 of f_dc * 0.15 * 255 + 127.5
EPS = 2e-6  # float32 arithmetic on top


def rotation_angle_bound(component_error: float, largest_min: float) -> float:
    """Worst rotation angle (degrees) when three stored components are each off by ``component_error``
    and the fourth is recovered as sqrt(1 - sum of squares) with true value >= ``largest_min``."""
    e3 = math.sqrt(3) * component_error  # |error| of the stored three
    # |w'^2 - w^2| <= 2 |rest| |e| + |e|^2 with |rest| <= 1; |w' - w| <= that / (w' + w) or its square root.
    d2 = 2 * e3 + e3 * e3
    dw = d2 / largest_min if largest_min > 0 else math.sqrt(d2)
    chord = math.hypot(e3, dw)
    return math.degrees(4 * math.asin(min(1.0, chord / 2)))


# spz v2: x, y, z to 1/255 each, w >= 0 may be ~0; smallest-three: the others to sqrt(2)/1022, largest >= 1/2.
SPZ_V2_ANGLE = rotation_angle_bound(0.5 / 127.5, 0.0)
SMALLEST_THREE_ANGLE = rotation_angle_bound(math.sqrt(0.5) / 511 / 2, 0.5)
CPLY_ANGLE = rotation_angle_bound(math.sqrt(2) / 1023 / 2, 0.5)


def tiny_scene(n: int = 300, seed: int = 0) -> GaussianScene:
    """A B = 1 scene inside every format's representable range."""
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        xyz=torch.rand(1, n, 3, generator=g) - 0.5,
        scale=torch.rand(1, n, 3, generator=g) * 6 - 8,
        rotation=torch.randn(1, n, 4, generator=g),
        opacity=torch.randn(1, n, 1, generator=g) * 3,
        color=(torch.rand(1, n, 3, generator=g) * 6 - 3),
    )


@pytest.fixture(scope="module")
def head() -> GaussianScene:
    """The built-in network's head used for the error table in the module docs."""
    from cgsgan.io import load_network

    G = load_network()
    torch.manual_seed(0)
    with torch.no_grad():
        scene, _ = G(torch.randn(1, G.cfg.z_dim), truncation_psi=0.8)
    return scene.detach()


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        dim=-1,
    )


def angle_deg(a: torch.Tensor, b: torch.Tensor, axis_flips: bool = False) -> torch.Tensor:
    """Rotation angles [N] between quaternions [N, 4] (any norm). ``axis_flips``: also accept b = a
    turned 180 degrees about one of its own axes (the same Gaussian, as other tools write frames)."""
    a = torch.nn.functional.normalize(a.double(), dim=-1)
    b = torch.nn.functional.normalize(b.double(), dim=-1)
    candidates = [a]
    if axis_flips:
        candidates += [quat_mul(a, torch.eye(4, dtype=a.dtype)[i].expand_as(a)) for i in (1, 2, 3)]
    dot = torch.stack([(c * b).sum(-1).abs() for c in candidates]).max(0).values
    return torch.rad2deg(2 * torch.acos(dot.clamp(max=1.0)))


def assert_spz_close(a: GaussianScene, b: GaussianScene, version: int, axis_flips: bool = False) -> None:
    """b (read from spz) within spz's quantisation of a (colours inside spz's SH DC range [-3.33, 3.33])."""
    assert b.num_gaussians == a.num_gaussians and b.dtype == torch.float32
    assert (a.xyz - b.xyz).abs().max() <= SPZ_POSITION + EPS
    assert (a.scale.clamp(*SPZ_LOG_SCALE_RANGE) - b.scale).abs().max() <= SPZ_LOG_SCALE + EPS
    assert (a.opacities() - b.opacities()).abs().max() <= OPACITY + EPS
    inside = a.color.abs() <= 127.5 / (0.15 * 255)
    assert ((a.color - b.color).abs() * inside).max() <= SPZ_SH_DC + EPS
    assert (a.rgb() - b.rgb()).abs().max() <= SH_C0 * SPZ_SH_DC + EPS or not inside.all()
    bound = SPZ_V2_ANGLE if version <= 2 else SMALLEST_THREE_ANGLE
    assert angle_deg(a.rotation[0], b.rotation[0], axis_flips).max() <= bound


def chunk_bounds(path: Path) -> dict[str, np.ndarray]:
    """Per-Gaussian chunk ranges [N, 3] of position, log-scale and rgb read straight from the file."""
    ply = PlyData.read(str(path))
    chunk, n = ply["chunk"].data, ply["vertex"].count
    index = np.arange(n) // 256
    span = {}
    for name, props in {
        "xyz": ("x", "y", "z"),
        "scale": ("scale_x", "scale_y", "scale_z"),
        "rgb": ("r", "g", "b"),
    }.items():
        lo = np.stack([chunk[f"min_{p}"] for p in props], -1).astype(np.float64)
        hi = np.stack([chunk[f"max_{p}"] for p in props], -1).astype(np.float64)
        span[name] = (hi - lo)[index]
    return span


def assert_cply_close(a: GaussianScene, b: GaussianScene, path: Path, axis_flips: bool = False) -> None:
    """b (read from a compressed PLY at ``path``, same order as a) within the file's chunk quantisation."""
    span = chunk_bounds(path)
    steps = torch.tensor([2047.0, 1023.0, 2047.0], dtype=torch.float64)  # 11-10-11 bits
    assert b.num_gaussians == a.num_gaussians
    pos_err = (a.xyz[0] - b.xyz[0]).abs().double()
    assert (pos_err <= torch.from_numpy(span["xyz"]) / steps / 2 + EPS).all()
    scale_err = (a.scale[0] - b.scale[0]).abs().double()
    assert (scale_err <= torch.from_numpy(span["scale"]) / steps / 2 + EPS).all()
    rgb_err = ((0.5 + SH_C0 * a.color[0]) - (0.5 + SH_C0 * b.color[0])).abs().double()
    assert (rgb_err <= torch.from_numpy(span["rgb"]) / 255 / 2 + EPS).all()
    assert (a.opacities() - b.opacities()).abs().max() <= OPACITY + EPS
    assert angle_deg(a.rotation[0], b.rotation[0], axis_flips).max() <= CPLY_ANGLE


def morton_sorted(scene: GaussianScene, up: str = "y") -> GaussianScene:
    """``scene`` in the order write_compressed_ply stores it (sorted in the stored frame)."""
    xyz = scene.xyz[0].numpy().copy()
    if up == "-y":
        xyz[:, 1:] *= -1
    return scene.subset(torch.from_numpy(morton_order(xyz)))


def raw_payload(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


# ------------------------------------------------------------------------ spz
def test_bounds_are_what_the_docs_state():
    assert SPZ_V2_ANGLE == pytest.approx(13.4, abs=0.1)
    assert SMALLEST_THREE_ANGLE == pytest.approx(0.57, abs=0.01) and CPLY_ANGLE < SMALLEST_THREE_ANGLE


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("up", ["y", "-y"])
def test_spz_round_trip_within_quantisation(tmp_path, version, up):
    scene = tiny_scene()
    back = read_spz(write_spz(tmp_path / "s.spz", scene, version=version, up=up), up=up)
    assert_spz_close(scene, back, version)


@pytest.mark.parametrize("version", [2, 3])
def test_spz_header_and_layout(tmp_path, version):
    scene = tiny_scene(n=37)
    path = write_spz(tmp_path / "s.spz", scene, version=version, antialiased=True)
    data = raw_payload(path)
    magic, ver, n, degree, bits, flags, reserved = struct.unpack_from("<IIIBBBB", data)
    assert data[:4] == b"NGSP" and magic == 0x5053474E
    assert (ver, n, degree, bits, flags, reserved) == (version, 37, 0, 12, 1, 0)
    assert len(data) == 16 + 37 * (9 + 1 + 3 + 3 + (3 if version == 2 else 4))
    header = read_spz_header(path)
    assert (header.version, header.num_points, header.sh_degree, header.fractional_bits) == (version, 37, 0, 12)
    assert header.antialiased
    assert not read_spz_header(write_spz(tmp_path / "t.spz", scene)).antialiased
    assert write_spz(tmp_path / "a.spz", scene).read_bytes() == write_spz(tmp_path / "b.spz", scene).read_bytes()


@pytest.mark.parametrize("version", [2, 3])
def test_spz_bytes_of_one_gaussian(tmp_path, version):
    """Hand-computed bytes; up="-y" stores our frame unchanged (it is already RUB)."""
    scene = GaussianScene(
        xyz=torch.tensor([[[0.25, -1.0, 0.5]]]),
        scale=torch.tensor([[[-2.0, -10.0, 0.0]]]),
        rotation=torch.tensor([[[2.0, 0.0, 0.0, 0.0]]]),  # identity, unnormalised
        opacity=torch.tensor([[[0.0]]]),
        color=torch.tensor([[[0.0, 1.0, -1.0]]]),
    )
    data = raw_payload(write_spz(tmp_path / "one.spz", scene, version=version, up="-y"))[16:]
    assert data[:9] == bytes([0x00, 0x04, 0x00, 0x00, 0xF0, 0xFF, 0x00, 0x08, 0x00])  # 1024, -4096, 2048
    assert data[9] == 128  # sigmoid(0) * 255 = 127.5, rounded away from zero
    assert list(data[10:13]) == [128, round(127.5 + 38.25), round(127.5 - 38.25)]
    assert list(data[13:16]) == [128, 0, 160]
    rotation = data[16:]
    assert rotation == (bytes([128, 128, 128]) if version == 2 else struct.pack("<I", 3 << 30))
    # The default frame stores (x, -y, -z) of ours: splat-transform's PLY then matches our PLY.
    flipped = raw_payload(write_spz(tmp_path / "flip.spz", scene, version=version))[16:25]
    assert flipped == bytes([0x00, 0x04, 0x00, 0x00, 0x10, 0x00, 0x00, 0xF8, 0xFF])


def test_spz_rotation_signs_and_v3_code(tmp_path):
    """q and -q encode alike; a known smallest-three code decodes to its quaternion."""
    q = torch.tensor([[[0.1, -0.7, 0.5, 0.3]]])
    scene = tiny_scene(n=1).with_fields(rotation=q)
    for version in (2, 3):
        a = raw_payload(write_spz(tmp_path / "a.spz", scene, version=version, up="-y"))
        b = raw_payload(write_spz(tmp_path / "b.spz", scene.with_fields(rotation=-q), version=version, up="-y"))
        assert a == b
    # Largest |component| is x (xyz w index 0), negative: flip all, then y, z, w follow, first in the high bits.
    u = (q / q.norm()).flatten().tolist()
    y, z, w = (-u[2], -u[3], -u[0])
    expected = 0 << 30
    for c in (y, z, w):
        expected = (expected << 10) | (int(c < 0) << 9) | int(math.floor(abs(c) * math.sqrt(2) * 511 + 0.5))
    assert raw_payload(tmp_path / "a.spz")[-4:] == struct.pack("<I", expected)


def test_read_spz_version_1(tmp_path):
    """Version 1 stores positions as float16, rotations as version 2 does."""
    xyz = np.array([[0.5, -0.25, 0.125]], "<f2")
    body = xyz.tobytes() + bytes([255 // 2]) + bytes([128, 128, 128]) + bytes([128, 128, 128]) + bytes([128] * 3)
    path = tmp_path / "v1.spz"
    path.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 1, 1, 0, 0, 0, 0) + body))
    scene = read_spz(path, up="-y")
    assert scene.xyz.flatten().tolist() == [0.5, -0.25, 0.125]
    assert angle_deg(scene.rotation[0], torch.tensor([[1.0, 0, 0, 0]])).max() < 1.0  # 128 is 1/255 off 0
    assert read_spz_header(path).version == 1


def _v4_file(path: Path, scene: GaussianScene, compress) -> None:
    """An NGSP version-4 container built from our version-3 payload (same sections, zstd each)."""
    v3 = raw_payload(write_spz(path.with_suffix(".v3.spz"), scene, version=3))
    n = scene.num_gaussians
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n]
    body, offset, streams = v3[16:], 0, []
    for size in sizes:
        streams.append(compress(body[offset : offset + size]))
        offset += size
    header = struct.pack("<IIIBBBBI", 0x5053474E, 4, n, 0, 12, 0, len(sizes), 32) + bytes(12)
    toc = b"".join(struct.pack("<QQ", len(s), size) for s, size in zip(streams, sizes, strict=True))
    path.write_bytes(header + toc + b"".join(streams))


def test_read_spz_version_4(tmp_path):
    zstandard = pytest.importorskip("zstandard", reason="spz version 4 needs the optional zstandard package")
    scene = tiny_scene(n=50)
    path = tmp_path / "v4.spz"
    _v4_file(path, scene, zstandard.ZstdCompressor().compress)
    assert read_spz_header(path).version == 4
    assert_spz_close(scene, read_spz(path), 3)


def test_read_spz_version_4_without_zstandard(tmp_path, monkeypatch):
    import cgsgan.io.spz as spz

    path = tmp_path / "v4.spz"
    _v4_file(path, tiny_scene(n=5), lambda b: b)  # never decompressed

    def missing(data, size):
        raise ImportError("zstandard")

    monkeypatch.setattr(spz, "_zstd_decompress", missing)
    with pytest.raises(ValueError, match=r"v4\.spz.*version 4.*zstandard"):
        read_spz(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an spz file"),
        (b"ply\nformat ascii 1.0\n", "not an spz file"),
        (gzip.compress(b"hello world, not splats"), "not an spz file"),
        (gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 9, 1, 0, 12, 0, 0)), "version 1-3.*9"),
        (gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 10, 0, 12, 0, 0) + bytes(50)), "truncated"),
        (gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 0, 0, 12, 0, 0)), "no Gaussians"),
        (gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 2, 0) + bytes(19)), "extensions"),
        (gzip.compress(b"NGSP")[:-6], "ends inside|corrupt"),
        (b"\x1f\x8b" + bytes(30), "corrupt gzip"),
        (struct.pack("<IIIBBBBI", 0x5053474E, 7, 1, 0, 12, 0, 5, 32) + bytes(12), "version 7"),
    ],
)
def test_read_spz_rejects_non_spz(tmp_path, content, message):
    path = tmp_path / "bad.spz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"bad\.spz.*({message})"):
        read_spz(path)


def test_spz_argument_errors(tmp_path):
    scene = tiny_scene(n=4)
    with pytest.raises(FileNotFoundError, match="nope.spz"):
        read_spz(tmp_path / "nope.spz")
    with pytest.raises(ValueError, match="version"):
        write_spz(tmp_path / "s.spz", scene, version=4)
    with pytest.raises(ValueError, match="fractional_bits"):
        write_spz(tmp_path / "s.spz", scene, fractional_bits=24)
    with pytest.raises(ValueError, match="24-bit"):
        write_spz(tmp_path / "s.spz", scene.with_fields(xyz=scene.xyz * 1e4))
    with pytest.raises(ValueError, match="up"):
        write_spz(tmp_path / "s.spz", scene, up="z")
    assert not (tmp_path / "s.spz").exists()
    # Fewer fractional bits widen the range (step 2**-4).
    far = scene.with_fields(xyz=scene.xyz * 1e4)
    back = read_spz(write_spz(tmp_path / "far.spz", far, fractional_bits=4))
    assert (back.xyz - far.xyz).abs().max() <= 0.5 / 16 + 1e-3


# --------------------------------------------------------------- compressed ply
@pytest.mark.parametrize("up", ["y", "-y"])
def test_compressed_ply_round_trip_within_quantisation(tmp_path, up):
    scene = tiny_scene(n=600)  # three chunks, the last one partial
    path = write_compressed_ply(tmp_path / "s.compressed.ply", scene, up=up, sort=False)
    assert_cply_close(scene, read_compressed_ply(path, up=up), path)
    path = write_compressed_ply(tmp_path / "t.compressed.ply", scene, up=up)
    back = read_compressed_ply(path, up=up)
    sorted_scene = morton_sorted(scene, up)
    assert_cply_close(sorted_scene, back, path)


def test_compressed_ply_layout(tmp_path):
    path = write_compressed_ply(tmp_path / "s.compressed.ply", tiny_scene(n=600))
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["chunk", "vertex"]
    assert ply["chunk"].count == 3 and ply["vertex"].count == 600
    chunk_props = [p.name for p in ply["chunk"].properties]
    assert chunk_props[:6] == ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z"]
    assert len(chunk_props) == 18 and all(p.val_dtype in ("f4", "float32", "float") for p in ply["chunk"].properties)
    vertex_props = [p.name for p in ply["vertex"].properties]
    assert vertex_props == ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
    header = path.read_bytes().split(b"end_header", 1)[0]
    assert b"format binary_little_endian 1.0" in header and b"property uint packed_color" in header
    assert path.stat().st_size == len(header) + len(b"end_header\n") + 3 * 18 * 4 + 600 * 16


def test_compressed_ply_bits_of_one_gaussian(tmp_path):
    """One Gaussian: every chunk range is empty, so positions and scales pack to 0 and decode exactly."""
    scene = GaussianScene(
        xyz=torch.tensor([[[0.25, -0.5, 0.125]]]),
        scale=torch.tensor([[[-3.0, -4.0, -5.0]]]),
        rotation=torch.tensor([[[0.0, 0.0, -3.0, 0.0]]]),
        opacity=torch.tensor([[[0.0]]]),
        color=torch.tensor([[[0.0, 0.0, 0.0]]]),
    )
    path = write_compressed_ply(tmp_path / "one.compressed.ply", scene)
    vertex = PlyData.read(str(path))["vertex"].data[0]
    assert vertex["packed_position"] == 0 and vertex["packed_scale"] == 0
    half = round(0.5 * 1023)  # 0 -> 0.5 in 10 bits
    assert vertex["packed_rotation"] == (2 << 30) | (half << 20) | (half << 10) | half  # y largest, made positive
    assert vertex["packed_color"] & 255 == 128  # sigmoid(0) -> 127.5 -> 128
    back = read_compressed_ply(path)
    assert back.xyz.flatten().tolist() == [0.25, -0.5, 0.125]
    assert back.scale.flatten().tolist() == [-3.0, -4.0, -5.0]


def test_compressed_ply_with_12_chunk_properties_and_sh(tmp_path):
    """Files without colour bounds (plain 8-bit rgb) and with an sh element are read; SH is dropped with a warning."""
    n = 3
    chunk = np.zeros(1, [(p, "<f4") for p in ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                                                "min_scale_x", "min_scale_y", "min_scale_z",
                                                "max_scale_x", "max_scale_y", "max_scale_z")])  # fmt: skip
    chunk["max_x"] = 1.0
    vertex = np.zeros(n, [(p, "<u4") for p in ("packed_position", "packed_rotation", "packed_scale", "packed_color")])
    vertex["packed_position"] = [0, 1023 << 21, 2047 << 21]
    vertex["packed_color"] = (255 << 24) | (0 << 16) | (51 << 8) | 255
    vertex["packed_rotation"] = (0 << 30) | (511 << 20) | (511 << 10) | 511
    sh = np.full(n, 128, [(f"f_rest_{i}", "u1") for i in range(9)])
    sh["f_rest_0"][1] = 200
    from plyfile import PlyElement

    elements = [PlyElement.describe(chunk, "chunk"), PlyElement.describe(vertex, "vertex")]
    path = tmp_path / "foreign.compressed.ply"
    PlyData(elements + [PlyElement.describe(sh, "sh")], text=False, byte_order="<").write(str(path))
    with pytest.warns(UserWarning, match="SH"):
        scene = read_compressed_ply(path)
    assert scene.xyz[0, :, 0].tolist() == pytest.approx([0.0, 1023 / 2047, 1.0])
    assert scene.rgb()[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-6)
    assert angle_deg(scene.rotation[0], torch.tensor([[1.0, 0, 0, 0]])).max() < 0.2


def test_not_a_compressed_ply(tmp_path):
    plain = write_ply(tmp_path / "plain.ply", tiny_scene(n=5))
    assert not is_compressed_ply(plain)
    with pytest.raises(ValueError, match=r"plain\.ply: not a PlayCanvas compressed PLY"):
        read_compressed_ply(plain)
    garbage = tmp_path / "junk.compressed.ply"
    garbage.write_bytes(b"\x00\x01 definitely not a ply")
    assert not is_compressed_ply(garbage)
    with pytest.raises(ValueError, match=r"junk\.compressed\.ply"):
        read_compressed_ply(garbage)
    with pytest.raises(FileNotFoundError, match="nope"):
        read_compressed_ply(tmp_path / "nope.compressed.ply")
    assert not is_compressed_ply(tmp_path / "nope.ply")


# ------------------------------------------------------------ files / convert
def test_suffix_detection(tmp_path):
    scene = tiny_scene(n=40)
    assert set(SCENE_SUFFIXES) == {".ply", ".compressed.ply", ".splat", ".spz"}
    cply = write_scene(tmp_path / "Head.Compressed.PLY", scene)
    assert is_compressed_ply(cply)
    plain = write_scene(tmp_path / "head.ply", scene)
    assert not is_compressed_ply(plain)
    assert plain.stat().st_size > 40 * 248
    # A compressed layout named plain .ply is recognised by its header.
    shutil.copy(cply, tmp_path / "renamed.ply")
    assert torch.equal(read_scene(tmp_path / "renamed.ply").xyz, read_scene(cply).xyz)
    # ... but a plain PLY named .compressed.ply is an error.
    shutil.copy(plain, tmp_path / "fake.compressed.ply")
    with pytest.raises(ValueError, match="not a PlayCanvas compressed PLY"):
        read_scene(tmp_path / "fake.compressed.ply")
    with pytest.raises(ValueError, match=r"head\.obj.*\.ply or \.splat"):
        write_scene(tmp_path / "head.obj", scene)


def test_write_scene_spz_version_and_compact(tmp_path):
    scene = tiny_scene(n=10)
    assert read_spz_header(write_scene(tmp_path / "a.spz", scene)).version == 2
    assert read_spz_header(write_scene(tmp_path / "b.spz", scene, spz_version=3)).version == 3
    with pytest.raises(ValueError, match="spz_version"):
        write_scene(tmp_path / "c.spz", scene, spz_version=4)
    for name in ("x.spz", "x.compressed.ply", "x.splat"):
        with pytest.raises(ValueError, match="compact applies to .ply output only"):
            write_scene(tmp_path / name, scene, compact=True)
    with pytest.raises(ValueError, match="spz_version"):
        convert_file(tmp_path / "a.spz", tmp_path / "d.spz", spz_version=1)


FORMATS = ["s.ply", "s.compressed.ply", "s.splat", "s.spz"]


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", FORMATS)
def test_convert_between_every_pair(tmp_path, src, dst):
    scene = tiny_scene(n=300)
    source = write_scene(tmp_path / "in" / src, scene, spz_version=3)
    target = convert_file(source, tmp_path / "out" / dst, up_in="y", up_out="-y", spz_version=3)
    back = read_scene(target, up="-y")
    assert back.num_gaussians == scene.num_gaussians
    # Orders differ (splat sorts by size, compressed PLY by Morton code): match by position.
    d = torch.cdist(scene.xyz[0].double(), back.xyz[0].double())
    nearest = d.min(dim=1)
    # Two quantisations at most: spz 1.2e-4, compressed PLY <= chunk span / 2046 (<= 1 / 2046 here).
    assert nearest.values.max() <= 2 * math.sqrt(3) * (0.5 / 1023) + 1e-5  # Euclidean over 3 axes
    matched = back.subset(nearest.indices)
    # .splat truncates (a whole step of 1/255); the others round (half a step).
    assert (matched.opacities() - scene.opacities()).abs().max() <= 2 / 255 + 1e-5


# ------------------------------------------------------------ generated head
@pytest.mark.parametrize("fmt", ["spz2", "spz3", "cply"])
def test_head_round_trip_matches_the_documented_table(tmp_path, head, fmt):
    if fmt == "cply":
        path = write_compressed_ply(tmp_path / "h.compressed.ply", head)
        ordered = morton_sorted(head)
        back = read_compressed_ply(path)
        assert_cply_close(ordered, back, path)
        extent = (head.xyz.amax(1) - head.xyz.amin(1)).max()  # a chunk spans at most the head
        assert (ordered.xyz - back.xyz).abs().max() <= 5e-4 * extent
    else:
        version = int(fmt[-1])
        back = read_spz(write_spz(tmp_path / "h.spz", head, version=version))
        assert_spz_close(head, back, version)
        # rgb clamped at 0 as rendered; the format stores SH DC within +-127.5 / (0.15 * 255), so the few brighter
        # colours come back at the top of that range (rgb 1.44)
        top = 0.5 + SH_C0 * 127.5 / (0.15 * 255)
        assert (head.rgb().clamp_max(top) - back.rgb()).abs().max() <= SH_C0 * SPZ_SH_DC + EPS
        ordered = head
    angles = angle_deg(ordered.rotation[0], back.rotation[0])
    assert angles.mean() <= {"spz2": 1.0, "spz3": 0.1, "cply": 0.1}[fmt]
    # spz clamps log-scales to its byte's range: a trained head's flattest axes (thinner than e^-10) come back as e^-10
    stored = ordered.scale if fmt == "cply" else ordered.scale.clamp(*SPZ_LOG_SCALE_RANGE)
    scale = (back.scales() / stored.exp() - 1).abs().max()
    # cply: the chunk-wise bound holds above (assert_cply_close); the table's worst Gaussian is 0.36 %
    assert scale <= (math.exp(SPZ_LOG_SCALE) - 1 + 1e-5 if fmt != "cply" else 5e-3)


# ------------------------------------------------------- gsply (PyPI), optional
@pytest.mark.skipif(importlib.util.find_spec("gsply") is None, reason="gsply is not installed (optional)")
def test_gsply_cross_check(tmp_path):
    import gsply

    scene = tiny_scene(n=300)
    # up="-y" stores our frame unchanged; gsply does no frame conversion.
    ours = write_spz(tmp_path / "ours.spz", scene, version=3, up="-y")
    data = gsply.read_spz(str(ours))
    theirs = GaussianScene(
        xyz=torch.as_tensor(np.asarray(data.means, np.float32))[None],
        scale=torch.as_tensor(np.asarray(data.scales, np.float32))[None],
        rotation=torch.as_tensor(np.asarray(data.quats, np.float32))[None],
        opacity=torch.as_tensor(np.asarray(data.opacities, np.float32)).reshape(1, -1, 1),
        color=torch.as_tensor(np.asarray(data.sh0, np.float32)).reshape(1, -1, 3),
    )
    assert_spz_close(scene, theirs, 3)
    # gsply writes spz v3 and compressed PLY from the same arrays; we read them.
    gsply.write_spz(str(tmp_path / "gs.spz"), data)
    assert_spz_close(scene, read_spz(tmp_path / "gs.spz", up="-y"), 3)
    plain = write_ply(tmp_path / "plain.ply", scene)
    gsply.plywrite(str(tmp_path / "gs.compressed.ply"), gsply.plyread(str(plain)), compressed=True)
    back = read_scene(tmp_path / "gs.compressed.ply")
    nearest = torch.cdist(scene.xyz[0].double(), back.xyz[0].double()).min(dim=1)
    assert nearest.values.max() <= 1 / 1023


# ------------------------------------------------- splat-transform (npm), optional
def splat_transform() -> list[str] | None:
    """The command that runs splat-transform: $SPLAT_TRANSFORM, .ci/node_modules (see .ci/run), or PATH."""
    if not shutil.which("node"):
        return None
    for candidate in (
        os.environ.get("SPLAT_TRANSFORM"),
        REPO / ".ci/node_modules/@playcanvas/splat-transform/bin/cli.mjs",
        shutil.which("splat-transform"),
    ):
        if candidate and Path(candidate).is_file():
            return ["node", str(candidate)]
    return None


needs_splat_transform = pytest.mark.skipif(
    splat_transform() is None,
    reason="needs node and @playcanvas/splat-transform (npm install --prefix .ci @playcanvas/splat-transform)",
)


def run_splat_transform(*args: Path | str) -> None:
    result = subprocess.run(
        [*splat_transform(), "-w", "-q", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout


@needs_splat_transform
def test_splat_transform_reads_our_files(tmp_path, head):
    """splat-transform converts our .spz (v2, v3) and .compressed.ply to PLY; the default frame matches our PLY."""
    for version in (2, 3):
        src = write_spz(tmp_path / f"v{version}.spz", head, version=version)
        run_splat_transform(src, tmp_path / f"v{version}.ply")
        # Niantic's RUB<->RDF conversion conjugates the quaternion: the same Gaussian, axes flipped.
        assert_spz_close(head, read_ply(tmp_path / f"v{version}.ply"), version, axis_flips=True)
    src = write_compressed_ply(tmp_path / "h.compressed.ply", head)
    run_splat_transform(src, tmp_path / "c.ply")
    assert_cply_close(morton_sorted(head), read_ply(tmp_path / "c.ply"), src)


@needs_splat_transform
def test_we_read_splat_transform_files(tmp_path):
    scene = tiny_scene(n=300)
    plain = write_ply(tmp_path / "plain.ply", scene)
    run_splat_transform(plain, "--spz-version", "3", tmp_path / "st3.spz")
    assert read_spz_header(tmp_path / "st3.spz").version == 3
    assert_spz_close(scene, read_spz(tmp_path / "st3.spz"), 3, axis_flips=True)
    if importlib.util.find_spec("zstandard"):
        run_splat_transform(plain, tmp_path / "st4.spz")  # its default: version 4
        assert read_spz_header(tmp_path / "st4.spz").version == 4
        assert_spz_close(scene, read_spz(tmp_path / "st4.spz"), 3, axis_flips=True)
    run_splat_transform(plain, tmp_path / "st.compressed.ply")
    back = read_scene(tmp_path / "st.compressed.ply")
    nearest = torch.cdist(scene.xyz[0].double(), back.xyz[0].double()).min(dim=1)
    assert nearest.values.max() <= 1 / 1023
    matched = back.subset(nearest.indices)
    assert (matched.opacities() - scene.opacities()).abs().max() <= OPACITY + EPS
    assert angle_deg(scene.rotation[0], matched.rotation[0]).max() <= CPLY_ANGLE


# ------------------------------------------------------------ benchmark
def test_formats_benchmark_smoke():
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "benchmarks/formats.py", "--smoke"], cwd=root, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")[1:]]
            for r in result.stdout.splitlines() if r.startswith("| ")}  # fmt: skip
    assert rows["`.splat` (32 bytes a Gaussian)"] == ["16,384"]  # 512 Gaussians, 32 bytes each, no header
    worst = {field: [float(cell.split(" / ")[0]) for cell in cells] for field, cells in rows.items() if "/" in cells[0]}

    # every format within the bounds its steps guarantee (the .spz columns first, then the compressed PLY);
    # the table prints 3 significant digits
    def within(value: float, bound: float) -> bool:
        return value <= bound * 1.005

    assert all(within(v, SPZ_POSITION) for v in worst["position (scene units)"][:2])
    assert all(within(v, OPACITY) for v in worst["opacity"])
    assert all(within(v, SH_C0 * SPZ_SH_DC) for v in worst["rgb (clamped at 0)"][:2])
    spz2, spz3, cply = worst["rotation (degrees)"]
    assert within(spz2, SPZ_V2_ANGLE) and within(spz3, SMALLEST_THREE_ANGLE) and within(cply, CPLY_ANGLE)
