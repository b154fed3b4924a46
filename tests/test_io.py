"""cgsgan.io: 3DGS PLY and .splat files, world-frame conversion."""

from __future__ import annotations

import math
import os
import random
import struct
import warnings

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from cgsgan.gaussians import SH_C0, GaussianScene, rgb_to_sh
from cgsgan.io import read_ply, read_splat, to_frame, write_ply, write_splat

OFFICIAL_CGSGAN = (
    "x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3"
).split()
FULL = (
    "x y z nx ny nz f_dc_0 f_dc_1 f_dc_2".split()
    + [f"f_rest_{i}" for i in range(45)]
    + "opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
)
COMPACT = "x y z f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
COLUMNS = {  # GaussianScene field -> PLY properties
    "xyz": ["x", "y", "z"],
    "scale": ["scale_0", "scale_1", "scale_2"],
    "rotation": ["rot_0", "rot_1", "rot_2", "rot_3"],
    "opacity": ["opacity"],
    "color": ["f_dc_0", "f_dc_1", "f_dc_2"],
}


def random_scene(batch: int = 1, n: int = 257, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        xyz=torch.rand(batch, n, 3, generator=g) - 0.5,
        scale=torch.randn(batch, n, 3, generator=g) - 4.0,
        rotation=torch.randn(batch, n, 4, generator=g),
        opacity=torch.randn(batch, n, 1, generator=g) * 3,
        color=rgb_to_sh(torch.rand(batch, n, 3, generator=g)),
    )


def assert_bit_equal(a: GaussianScene, b: GaussianScene) -> None:
    assert a.xyz.shape == b.xyz.shape and b.dtype == torch.float32
    for name, value in a.tensors().items():
        other = getattr(b, name)
        assert torch.equal(value.view(torch.int32), other.view(torch.int32)), name


def header_size(path) -> int:
    data = path.read_bytes()
    return data.index(b"end_header\n") + len(b"end_header\n")


def write_raw_ply(path, scene: GaussianScene, names, dtype="f4", extra=None, text=False) -> None:
    """Write sample 0 of ``scene`` directly with plyfile, properties in ``names`` order."""
    values = {p: getattr(scene, f)[0, :, i].numpy() for f, ps in COLUMNS.items() for i, p in enumerate(ps)}
    values.update(extra or {})
    n = scene.num_gaussians
    arr = np.zeros(n, dtype=[(p, dtype) for p in names])
    for p in names:
        arr[p] = values.get(p, 0.0)
    PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(path))


def covariance(scene: GaussianScene) -> torch.Tensor:
    """R S S^T R^T [B, N, 3, 3] in float64, from an independent quaternion-to-matrix formula."""
    w, x, y, z = torch.nn.functional.normalize(scene.rotation.double(), dim=-1).unbind(-1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*w.shape, 3, 3)  # fmt: skip
    s = torch.diag_embed(scene.scale.double().exp())
    return r @ s @ s.transpose(-1, -2) @ r.transpose(-1, -2)


# --------------------------------------------------------------------- PLY write
@pytest.mark.parametrize("compact", [False, True])
def test_ply_round_trip_is_bit_exact(tmp_path, compact):
    scene = random_scene()
    scene.xyz[0, 0, 0] = -0.0  # the sign of zero survives too
    path = write_ply(tmp_path / "s.ply", scene, compact=compact)
    assert path == tmp_path / "s.ply"
    assert_bit_equal(scene, read_ply(path))


@pytest.mark.parametrize("compact, stride", [(False, 248), (True, 56)])
def test_ply_file_size(tmp_path, compact, stride):
    scene = random_scene(n=101)
    path = write_ply(tmp_path / "s.ply", scene, compact=compact)
    assert path.stat().st_size == header_size(path) + stride * 101


@pytest.mark.parametrize("compact, names", [(False, FULL), (True, COMPACT)])
def test_ply_header_layout(tmp_path, compact, names):
    path = write_ply(tmp_path / "s.ply", random_scene(n=5), compact=compact)
    ply = PlyData.read(str(path))
    assert not ply.text and ply.byte_order == "<"
    assert [e.name for e in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == names
    assert all(vertex.data.dtype[p] == np.dtype("<f4") for p in names)
    for p in names:
        if p.startswith(("nx", "ny", "nz", "f_rest_")):
            assert not vertex.data[p].any(), p
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 5\n"
    header += "".join(f"property float {p}\n" for p in names) + "end_header\n"
    assert path.read_bytes()[: header_size(path)] == header.encode()  # no comments, plain "float"


def test_write_ply_selects_sample_and_makes_parents(tmp_path):
    scene = random_scene(batch=3, n=20)
    for sample, expected in [(1, 1), (-1, 2), (0, 0)]:
        path = write_ply(tmp_path / "a" / "b" / f"{sample}.ply", scene, sample=sample)
        assert_bit_equal(scene[expected], read_ply(path))


def test_write_ply_accepts_float64_and_gradients(tmp_path):
    scene = random_scene(n=9).to(torch.float64).requires_grad_()
    back = read_ply(write_ply(tmp_path / "s.ply", scene))
    assert torch.equal(back.xyz, scene.xyz.detach().float())


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "s.ply"
    write_ply(path, random_scene(n=7))
    before = path.read_bytes()

    def broken_write(self, stream):
        stream.write(b"ply\nhalf a file")
        raise RuntimeError("disk exploded")

    monkeypatch.setattr(PlyData, "write", broken_write)
    with pytest.raises(RuntimeError, match="disk exploded"):
        write_ply(path, random_scene(n=9, seed=1))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.ply"]  # no temp file left behind


# ---------------------------------------------------------------------- PLY read
def test_read_official_cgsgan_layout(tmp_path):
    scene = random_scene(n=64)
    write_raw_ply(tmp_path / "cgs.ply", scene, OFFICIAL_CGSGAN)
    assert_bit_equal(scene, read_ply(tmp_path / "cgs.ply"))


def test_read_shuffled_property_order(tmp_path):
    scene = random_scene(n=64)
    names = list(FULL)
    random.Random(3).shuffle(names)
    write_raw_ply(tmp_path / "shuffled.ply", scene, names)
    assert_bit_equal(scene, read_ply(tmp_path / "shuffled.ply"))


def test_read_float64_properties(tmp_path):
    scene = random_scene(n=64)
    write_raw_ply(tmp_path / "f64.ply", scene, OFFICIAL_CGSGAN, dtype="f8")
    assert_bit_equal(scene, read_ply(tmp_path / "f64.ply"))  # float32 -> float64 -> float32 is exact


def test_read_ascii_ply(tmp_path):
    scene = random_scene(n=4)
    write_raw_ply(tmp_path / "a.ply", scene, COMPACT, text=True)
    assert_bit_equal(scene, read_ply(tmp_path / "a.ply"))


def test_read_nonzero_f_rest_warns_and_drops(tmp_path):
    scene = random_scene(n=16)
    rest = {f"f_rest_{i}": np.full(16, 0.1 * (i + 1), np.float32) for i in range(45)}
    write_raw_ply(tmp_path / "sh3.ply", scene, FULL, extra=rest)
    with pytest.warns(UserWarning, match=r"45 higher-order SH coefficients.*view dependence"):
        back = read_ply(tmp_path / "sh3.ply")
    assert_bit_equal(scene, back)


def test_read_zero_f_rest_does_not_warn(tmp_path):
    path = write_ply(tmp_path / "s.ply", random_scene(n=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ply(path)


# ---------------------------------------------------------------------- frames
def test_to_frame_geometry():
    scene = random_scene(batch=2, n=50)
    flipped = to_frame(scene, "-y")
    rx = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    assert torch.equal(flipped.xyz.double(), scene.xyz.double() @ rx.T)
    assert torch.allclose(covariance(flipped), rx @ covariance(scene) @ rx.T, rtol=1e-6, atol=1e-12)
    for name in ("scale", "opacity", "color"):
        assert torch.equal(getattr(flipped, name), getattr(scene, name))
    # Quaternions: q_x(pi) * q, i.e. (w, x, y, z) -> (-x, w, -z, y).
    w, x, y, z = scene.rotation.unbind(-1)
    assert torch.equal(flipped.rotation, torch.stack((-x, w, -z, y), dim=-1))


def test_to_frame_identity_and_inverse():
    scene = random_scene(n=20)
    assert to_frame(scene, "y") is scene
    assert_bit_equal(scene, to_frame(to_frame(scene, "-y"), "-y", inverse=True))
    twice = to_frame(to_frame(scene, "-y"), "-y")  # an involution up to the quaternion's sign
    assert torch.equal(twice.rotation, -scene.rotation)
    assert torch.equal(twice.xyz, scene.xyz)
    with pytest.raises(ValueError, match="up"):
        to_frame(scene, "z")


def test_ply_y_down_round_trip_and_contents(tmp_path):
    scene = random_scene(n=40)
    path = write_ply(tmp_path / "down.ply", scene, up="-y")
    assert_bit_equal(scene, read_ply(path, up="-y"))
    stored = read_ply(path)  # as a y-down viewer sees it
    assert torch.equal(stored.xyz, scene.xyz * torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(covariance(stored), covariance(to_frame(scene, "-y")), rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------ PLY errors
def test_write_ply_argument_errors(tmp_path):
    scene = random_scene(batch=2, n=5)
    with pytest.raises(ValueError, match="sample 2 out of range"):
        write_ply(tmp_path / "s.ply", scene, sample=2)
    with pytest.raises(ValueError, match="sample -3 out of range"):
        write_ply(tmp_path / "s.ply", scene, sample=-3)
    with pytest.raises(ValueError, match="up must be"):
        write_ply(tmp_path / "s.ply", scene, up="z")
    with pytest.raises(ValueError, match="no Gaussians"):
        write_ply(tmp_path / "s.ply", scene.subset(slice(0, 0)))
    with pytest.raises(TypeError, match="GaussianScene"):
        write_ply(tmp_path / "s.ply", scene.xyz)
    assert not (tmp_path / "s.ply").exists()


@pytest.mark.parametrize("field", ["xyz", "scale", "rotation", "opacity", "color"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_write_ply_rejects_non_finite(tmp_path, field, bad):
    scene = random_scene(batch=2, n=5)
    getattr(scene, field)[1, 3, 0] = bad
    write_ply(tmp_path / "ok.ply", scene, sample=0)  # only the written sample is checked
    with pytest.raises(ValueError, match=rf"scene\.{field} holds NaN/inf.*sample 1"):
        write_ply(tmp_path / "bad.ply", scene, sample=1)
    assert not (tmp_path / "bad.ply").exists()


def test_write_ply_rejects_float32_overflow(tmp_path):
    scene = random_scene(n=3).to(torch.float64)
    scene.scale[0, 1, 2] = 1e300
    with pytest.raises(ValueError, match=r"scene\.scale"):
        write_ply(tmp_path / "s.ply", scene)


def test_read_ply_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")


def test_read_ply_bad_up(tmp_path):
    path = write_ply(tmp_path / "s.ply", random_scene(n=3))
    with pytest.raises(ValueError, match="up must be"):
        read_ply(path, up="+z")


@pytest.mark.parametrize("compact", [False, True])
def test_read_ply_truncated(tmp_path, compact):
    path = write_ply(tmp_path / "cut.ply", random_scene(n=10), compact=compact)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"cut\.ply.*truncated"):
        read_ply(path)


def test_read_ply_header_only(tmp_path):
    path = write_ply(tmp_path / "hdr.ply", random_scene(n=10))
    path.write_bytes(path.read_bytes()[: header_size(path)])
    with pytest.raises(ValueError, match=r"hdr\.ply.*truncated"):
        read_ply(path)


def test_read_ply_cut_inside_header(tmp_path):
    path = write_ply(tmp_path / "half.ply", random_scene(n=10))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"half\.ply.*header is truncated"):
        read_ply(path)


@pytest.mark.parametrize(
    "content", [bytes(range(256)) * 4, b"hello, I am not a PLY\n", b""], ids=["binary", "text", "empty"]
)
def test_read_ply_garbage(tmp_path, content):
    path = tmp_path / "junk.ply"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"junk\.ply"):
        read_ply(path)


def test_read_ply_missing_properties(tmp_path):
    names = [p for p in OFFICIAL_CGSGAN if p not in ("opacity", "rot_3")]
    write_raw_ply(tmp_path / "partial.ply", random_scene(n=4), names)
    with pytest.raises(ValueError, match=r"partial\.ply.*required properties: opacity rot_3$"):
        read_ply(tmp_path / "partial.ply")


def test_read_ply_without_vertex_element(tmp_path):
    arr = np.zeros(3, dtype=[(p, "f4") for p in COMPACT])
    PlyData([PlyElement.describe(arr, "gaussian")]).write(str(tmp_path / "nov.ply"))
    with pytest.raises(ValueError, match=r"nov\.ply.*no 'vertex' element"):
        read_ply(tmp_path / "nov.ply")


def test_read_ply_empty_vertex_element(tmp_path):
    arr = np.zeros(0, dtype=[(p, "f4") for p in OFFICIAL_CGSGAN])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "empty.ply"))
    with pytest.raises(ValueError, match=r"empty\.ply.*no Gaussians"):
        read_ply(tmp_path / "empty.ply")


# ------------------------------------------------------------------------ splat
def splat_key(scene: GaussianScene) -> np.ndarray:
    """convert.py's sort key exp(s0 + s1 + s2) * sigmoid(opacity) [N], float64."""
    s = scene.scale[0].double().numpy()
    o = scene.opacity[0, :, 0].double().numpy()
    return np.exp(s.sum(-1)) / (1 + np.exp(-o))


SPLAT = np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def raw_splat(path) -> np.ndarray:
    return np.fromfile(path, dtype=SPLAT)


def test_splat_byte_layout(tmp_path):
    scene = GaussianScene(
        xyz=torch.tensor([[[1.0, -2.0, 3.5]]]),
        scale=torch.tensor([[[0.5, 0.25, 2.0]]]).log(),
        rotation=torch.tensor([[[2.0, 0.0, 0.0, 0.0]]]),  # identity, unnormalised
        opacity=torch.tensor([[[0.0]]]),  # alpha 0.5
        color=rgb_to_sh(torch.tensor([[[0.0, 0.5, 0.9]]])),
    )
    path = write_splat(tmp_path / "one.splat", scene)
    data = path.read_bytes()
    assert len(data) == 32
    xyz, scales = struct.unpack("<3f", data[:12]), struct.unpack("<3f", data[12:24])
    assert xyz == (1.0, -2.0, 3.5)
    assert scales == pytest.approx((0.5, 0.25, 2.0), rel=1e-6)
    assert tuple(data[24:28]) == (0, 127, 229, 127)  # truncated, not rounded
    assert tuple(data[28:32]) == (255, 128, 128, 128)  # 1 * 128 + 128 = 256 clips to 255


def test_splat_size_and_order(tmp_path):
    scene = random_scene(n=300)
    # Ties (equal key) must keep their input order: a stable sort.
    scene.scale[0, 100:200] = scene.scale[0, 100]
    scene.opacity[0, 100:200] = scene.opacity[0, 100]
    path = write_splat(tmp_path / "s.splat", scene)
    assert path.stat().st_size == 32 * 300
    expected = np.argsort(-splat_key(scene), kind="stable")
    np.testing.assert_array_equal(raw_splat(path)["xyz"], scene.xyz[0].numpy()[expected])
    keys = splat_key(scene)[expected]
    assert np.all(np.diff(keys) <= 0)


def test_splat_round_trip_within_quantisation(tmp_path):
    scene = random_scene(n=500)
    back = read_splat(write_splat(tmp_path / "s.splat", scene))
    order = torch.from_numpy(np.argsort(-splat_key(scene), kind="stable"))
    ref = scene.subset(order)
    assert back.xyz.shape == (1, 500, 3) and back.dtype == torch.float32
    assert torch.equal(back.xyz, ref.xyz)
    assert torch.allclose(back.scales(), ref.scales(), rtol=1e-6, atol=0)
    assert (back.opacities() - ref.opacities()).abs().max() <= 1 / 255 + 1e-6
    assert (back.rgb() - ref.rgb()).abs().max() <= 1 / 255 + 1e-6
    q_back, q_ref = back.rotations(), ref.rotations()
    sign = torch.where((q_back * q_ref).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    assert (sign * q_back - q_ref).abs().max() <= 2 / 128


def test_splat_y_down_round_trip(tmp_path):
    scene = random_scene(n=50)
    path = write_splat(tmp_path / "down.splat", scene, up="-y")
    order = torch.from_numpy(np.argsort(-splat_key(scene), kind="stable"))
    stored = torch.from_numpy(raw_splat(path)["xyz"].copy())
    assert torch.equal(stored, scene.xyz[0, order] * torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(read_splat(path, up="-y").xyz, scene.xyz[:, order])


def test_splat_selects_sample(tmp_path):
    scene = random_scene(batch=2, n=30)
    back = read_splat(write_splat(tmp_path / "s.splat", scene, sample=1))
    assert torch.equal(back.xyz.sort(dim=1).values, scene.xyz[1:].sort(dim=1).values)


@pytest.mark.parametrize("size", [0, 33, 31])
def test_read_splat_bad_size(tmp_path, size):
    path = tmp_path / "odd.splat"
    path.write_bytes(b"\x01" * size)
    with pytest.raises(ValueError, match=rf"odd\.splat.*{size} bytes"):
        read_splat(path)


def test_splat_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.splat"):
        read_splat(tmp_path / "nope.splat")
    scene = random_scene(n=4)
    with pytest.raises(ValueError, match="sample 1 out of range"):
        write_splat(tmp_path / "s.splat", scene, sample=1)
    with pytest.raises(ValueError, match="up must be"):
        write_splat(tmp_path / "s.splat", scene, up="x")
    scene.color[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"scene\.color"):
        write_splat(tmp_path / "s.splat", scene)
    assert not (tmp_path / "s.splat").exists()


def test_read_splat_clamps_alpha_and_zero_scale(tmp_path):
    data = np.zeros(2, dtype=SPLAT)  # zero scales, black, alpha 0 and 255
    data["rgba"][:, 3] = [0, 255]
    data["rot"] = [255, 128, 128, 128]
    data.tofile(tmp_path / "edge.splat")
    back = read_splat(tmp_path / "edge.splat")
    for value in back.tensors().values():
        assert torch.isfinite(value).all()
    assert back.opacities()[0, 0, 0] < 1e-5 and back.opacities()[0, 1, 0] > 1 - 1e-5
    assert abs(SH_C0 * back.color[0, 0, 0] + 0.5) < 1e-6  # rgb byte 0 -> 0.0
