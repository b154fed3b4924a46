"""Tests for cgsgan.camera: conformance with the official EG3D/CGS-GAN camera code and geometry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cgsgan.camera import (
    DEFAULT_FOCAL,
    DEFAULT_RADIUS,
    FRONTAL_PITCH,
    FRONTAL_YAW,
    camera_positions,
    check_labels,
    focal_from_fov,
    fov_from_focal,
    intrinsics_matrix,
    labels_to_matrices,
    look_at,
    matrices_to_labels,
    mirror_labels,
    projection_matrix,
    turntable,
    world_to_camera,
    yaw_sweep,
)

DATA = json.loads((Path(__file__).parent / "data" / "cameras.json").read_text())
ENTRIES = DATA["entries"]
F64 = torch.float64
ATOL = 1e-6  # the official values are float32


def ref(value) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL, rtol: float = 0.0) -> None:
    torch.testing.assert_close(actual.to(F64), expected.to(F64), atol=atol, rtol=rtol)


def random_angles(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    yaw = torch.rand(n, generator=gen, dtype=F64) * 2 * math.pi
    pitch = 0.2 + torch.rand(n, generator=gen, dtype=F64) * (math.pi - 0.4)
    return yaw, pitch


def mirror_matrix(cam2world: torch.Tensor) -> torch.Tensor:
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=cam2world.dtype))
    return flip @ cam2world @ flip


# ----------------------------------------------------------- conformance
def test_reference_setup_matches_defaults():
    assert DATA["radius"] == pytest.approx(DEFAULT_RADIUS)
    assert DATA["lookat"] == [0.0, 0.0, 0.0]
    close(intrinsics_matrix()[0], ref(DATA["intrinsics"]))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_conformance_with_official_code(entry):
    labels = look_at(entry["yaw"], entry["pitch"], radius=DATA["radius"], lookat=DATA["lookat"])
    assert labels.shape == (1, 25) and labels.dtype == torch.float32
    close(labels[0], ref(entry["label25"]))

    cam2world, intrinsics = labels_to_matrices(labels)
    close(cam2world[0], ref(entry["cam2world"]))
    close(intrinsics[0], ref(DATA["intrinsics"]))
    close(camera_positions(labels)[0], ref(entry["camera_position"]))

    close(mirror_labels(labels)[0], ref(entry["label25_xflip"]))
    # The x-flip rule applied to the official label itself.
    close(mirror_labels(ref(entry["label25"])[None])[0], ref(entry["label25_xflip"]))

    fov = fov_from_focal(DATA["intrinsics"][0][0])
    assert fov == pytest.approx(entry["fov_rad"], abs=ATOL)
    assert math.degrees(fov) == pytest.approx(entry["fov_deg"], abs=ATOL)

    world_view = world_to_camera(labels)[0]
    close(world_view.T, ref(entry["world_view_transform_rowvec"]))
    proj = projection_matrix(fov, fov, znear=0.01, zfar=10.0)[0]
    close(proj.T, ref(entry["projection_matrix_rowvec"]))
    # Entries here reach |8.5|: the official float32 inverse-then-product is itself
    # ~1.2e-6 off the exact value there, so allow float32-relative error on top.
    close((proj.to(F64) @ world_view.to(F64)).T, ref(entry["full_proj_transform_rowvec"]), rtol=1e-6)


# ----------------------------------------------------------- labels <-> matrices
def test_labels_matrices_round_trip():
    labels = torch.randn(5, 25, generator=torch.Generator().manual_seed(1))
    cam2world, intrinsics = labels_to_matrices(labels)
    assert cam2world.shape == (5, 4, 4) and intrinsics.shape == (5, 3, 3)
    assert torch.equal(cam2world[2, 1], labels[2, 4:8])
    assert torch.equal(intrinsics[3, 2], labels[3, 22:25])
    assert torch.equal(matrices_to_labels(cam2world, intrinsics), labels)
    again = labels_to_matrices(matrices_to_labels(cam2world, intrinsics))
    assert torch.equal(again[0], cam2world) and torch.equal(again[1], intrinsics)


def test_labels_to_matrices_returns_copies():
    labels = look_at(FRONTAL_YAW, FRONTAL_PITCH)
    before = labels.clone()
    cam2world, intrinsics = labels_to_matrices(labels)
    cam2world.zero_()
    intrinsics.zero_()
    assert torch.equal(labels, before)


def test_matrices_to_labels_shares_batch_one_intrinsics():
    cam2world, _ = labels_to_matrices(look_at(torch.tensor([0.5, 1.0, 2.0]), FRONTAL_PITCH))
    labels = matrices_to_labels(cam2world, intrinsics_matrix(3.0))
    assert labels.shape == (3, 25)
    assert torch.allclose(labels[:, 16:], intrinsics_matrix(3.0, batch_size=3).reshape(3, 9))


def test_intrinsics_matrix_values_and_batch():
    k = intrinsics_matrix(2.0, batch_size=4)
    assert k.shape == (4, 3, 3) and k.dtype == torch.float32
    assert torch.equal(k[0], torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]]))
    per_camera = intrinsics_matrix(torch.tensor([1.0, 2.0]))
    assert per_camera.shape == (2, 3, 3) and per_camera[1, 1, 1] == 2.0


# ----------------------------------------------------------- look-at geometry
def test_look_at_directions():
    frontal = camera_positions(look_at(FRONTAL_YAW, FRONTAL_PITCH, dtype=F64))[0]
    close(frontal, ref([0.0, 0.0, DEFAULT_RADIUS]), atol=1e-12)
    assert camera_positions(look_at(FRONTAL_YAW + 0.5, FRONTAL_PITCH))[0, 0] > 1.0  # to +x
    assert camera_positions(look_at(FRONTAL_YAW, FRONTAL_PITCH - 0.3))[0, 1] > 0.5  # up
    cam2world, _ = labels_to_matrices(look_at(FRONTAL_YAW, FRONTAL_PITCH, dtype=F64))
    close(cam2world[0, :3, :3], torch.diag(ref([1.0, -1.0, -1.0])), atol=1e-12)  # y down, z to origin


def test_look_at_is_batched_and_broadcast():
    yaw, pitch = random_angles(4)
    batch = look_at(yaw, pitch, dtype=F64)
    singles = torch.cat([look_at(float(y), float(p), dtype=F64) for y, p in zip(yaw, pitch, strict=True)])
    close(batch, singles, atol=1e-12)
    assert look_at(yaw, 1.0).shape == (4, 25)
    assert look_at(torch.tensor(1.0), 1.0).shape == (1, 25)
    per_focal = look_at(1.0, 1.0, focal=torch.tensor([1.0, 2.0, 3.0]))
    assert per_focal[:, 16].tolist() == [1.0, 2.0, 3.0]


def test_look_at_offset_turns_but_does_not_move_camera():
    target = (0.1, 0.2, -0.05)
    moved = look_at(FRONTAL_YAW + 0.3, FRONTAL_PITCH - 0.2, lookat=target, dtype=F64)
    plain = look_at(FRONTAL_YAW + 0.3, FRONTAL_PITCH - 0.2, dtype=F64)
    close(camera_positions(moved), camera_positions(plain), atol=1e-12)
    cam2world, _ = labels_to_matrices(moved)
    direction = ref(target) - cam2world[0, :3, 3]
    close(cam2world[0, :3, 2], direction / direction.norm(), atol=1e-12)


def test_pitch_is_clamped_off_the_poles():
    at_pole = look_at(0.3, 0.0, dtype=F64)
    assert torch.isfinite(at_pole).all()
    close(at_pole, look_at(0.3, 1e-5, dtype=F64), atol=1e-12)
    close(look_at(0.3, math.pi + 1.0, dtype=F64), look_at(0.3, math.pi - 1e-5, dtype=F64), atol=1e-12)


def test_rotation_is_orthonormal_with_det_one():
    yaw, pitch = random_angles(64, seed=2)
    cam2world, _ = labels_to_matrices(look_at(yaw, pitch, radius=1.7, dtype=F64))
    rot = cam2world[:, :3, :3]
    close(rot.transpose(-1, -2) @ rot, torch.eye(3, dtype=F64).expand(64, 3, 3), atol=1e-12)
    close(torch.linalg.det(rot), torch.ones(64, dtype=F64), atol=1e-12)
    close(camera_positions(look_at(yaw, pitch, radius=1.7, dtype=F64)).norm(dim=-1), torch.full((64,), 1.7, dtype=F64))
    close(cam2world[:, 3], ref([0.0, 0.0, 0.0, 1.0]).expand(64, 4), atol=0.0)


def test_look_at_gradient_flows_to_yaw():
    yaw = torch.tensor([0.4, 1.9], requires_grad=True)
    camera_positions(look_at(yaw, FRONTAL_PITCH))[:, 0].sum().backward()
    assert yaw.grad is not None and torch.isfinite(yaw.grad).all() and (yaw.grad.abs() > 0.1).all()


# ----------------------------------------------------------- mirror
def test_mirror_is_involution_and_reflection():
    yaw, pitch = random_angles(8, seed=3)
    labels = look_at(yaw, pitch, dtype=F64)
    before = labels.clone()
    mirrored = mirror_labels(labels)
    assert torch.equal(labels, before)  # not in place
    assert torch.equal(mirror_labels(mirrored), labels)
    cam2world, intrinsics = labels_to_matrices(labels)
    mirrored_c2w, mirrored_k = labels_to_matrices(mirrored)
    close(mirrored_c2w, mirror_matrix(cam2world), atol=0.0)
    assert torch.equal(mirrored_k, intrinsics)


@pytest.mark.parametrize("offset", [0.2, 0.5, -0.7])
@pytest.mark.parametrize("pitch", [FRONTAL_PITCH, FRONTAL_PITCH - 0.3, FRONTAL_PITCH + 0.2])
def test_mirror_equals_opposite_yaw(offset, pitch):
    mirrored = mirror_labels(look_at(FRONTAL_YAW + offset, pitch, dtype=F64))
    close(mirrored, look_at(FRONTAL_YAW - offset, pitch, dtype=F64), atol=1e-12)


# ----------------------------------------------------------- world <-> camera
def test_world_to_camera_inverts_cam2world():
    yaw, pitch = random_angles(16, seed=4)
    labels = look_at(yaw, pitch, lookat=(0.05, -0.1, 0.02), dtype=F64)
    cam2world, _ = labels_to_matrices(labels)
    close(world_to_camera(labels) @ cam2world, torch.eye(4, dtype=F64).expand(16, 4, 4), atol=1e-12)
    close(world_to_camera(labels), torch.linalg.inv(cam2world), atol=1e-12)


def test_world_origin_is_in_front_of_frontal_camera():
    world_view = world_to_camera(look_at(FRONTAL_YAW, FRONTAL_PITCH, dtype=F64))[0]
    origin_cam = world_view @ ref([0.0, 0.0, 0.0, 1.0])
    close(origin_cam, ref([0.0, 0.0, DEFAULT_RADIUS, 1.0]), atol=1e-12)


def test_projection_maps_fov_edge_to_ndc_one():
    fovx, fovy = 0.6, 0.4
    proj = projection_matrix(torch.tensor([fovx], dtype=F64), fovy, dtype=F64)[0]
    z = 3.0
    clip = proj @ ref([math.tan(fovx / 2) * z, -math.tan(fovy / 2) * z, z, 1.0])
    close(clip[:2] / clip[3], ref([1.0, -1.0]), atol=1e-12)
    assert projection_matrix(torch.tensor([0.3, 0.5]), 0.4).shape == (2, 4, 4)


# ----------------------------------------------------------- field of view
def test_fov_of_standard_focal():
    assert round(math.degrees(fov_from_focal(DEFAULT_FOCAL)), 4) == 13.3738
    assert focal_from_fov(fov_from_focal(DEFAULT_FOCAL)) == pytest.approx(DEFAULT_FOCAL, rel=1e-12)
    focals = torch.tensor([1.0, DEFAULT_FOCAL, 10.0], dtype=F64)
    fovs = fov_from_focal(focals)
    assert isinstance(fovs, torch.Tensor) and fovs.dtype == F64
    close(focal_from_fov(fovs), focals, atol=1e-12)
    assert fov_from_focal(0.5) == pytest.approx(math.pi / 2)


# ----------------------------------------------------------- orbit paths
def orbit_angles(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(yaw - pi/2, pitch, radius) recovered from camera positions."""
    pos = camera_positions(labels).to(F64)
    radius = pos.norm(dim=-1)
    yaw_offset = torch.atan2(pos[:, 0], pos[:, 2])
    pitch = (math.pi / 2) * (1 - pos[:, 1] / radius)  # y = r cos(arccos(1 - 2 pitch / pi))
    return yaw_offset, pitch, radius


def test_turntable_full_circle_from_frontal():
    frames = 12
    labels = turntable(frames)
    assert labels.shape == (frames, 25) and labels.dtype == torch.float32
    close(labels[0], look_at(FRONTAL_YAW, FRONTAL_PITCH)[0])
    yaw_offset, pitch, radius = orbit_angles(labels)
    close(radius, torch.full((frames,), DEFAULT_RADIUS, dtype=F64))
    expected = torch.arange(frames, dtype=F64) * (2 * math.pi / frames)
    wrapped = torch.remainder(yaw_offset - expected + math.pi, 2 * math.pi) - math.pi
    close(wrapped, torch.zeros(frames, dtype=F64))
    close(pitch, torch.full((frames,), FRONTAL_PITCH, dtype=F64))
    assert turntable(1).shape == (1, 25)


def test_turntable_keeps_pitch():
    _, pitch, _ = orbit_angles(turntable(5, pitch=1.2, dtype=F64))
    close(pitch, torch.full((5,), 1.2, dtype=F64), atol=1e-12)


def test_yaw_sweep_stays_within_ranges():
    frames, yaw_range, pitch_range = 40, 0.35, 0.15
    labels = yaw_sweep(frames, yaw_range, pitch_range, dtype=F64)
    assert labels.shape == (frames, 25)
    yaw_offset, pitch, radius = orbit_angles(labels)
    assert yaw_offset.abs().max() <= yaw_range + 1e-9
    assert (pitch - FRONTAL_PITCH).abs().max() <= pitch_range + 1e-9
    assert yaw_offset.abs().max() == pytest.approx(yaw_range, abs=1e-9)  # frame 10: sin = 1
    assert pitch[0] == pytest.approx(FRONTAL_PITCH + pitch_range, abs=1e-9)  # cos = 1, camera lower
    close(radius, torch.full((frames,), DEFAULT_RADIUS, dtype=F64), atol=1e-12)


# ----------------------------------------------------------- dtype / device
def test_float64_is_honoured():
    assert look_at(1.0, 1.0, dtype=F64).dtype == F64
    assert intrinsics_matrix(dtype=F64).dtype == F64
    assert projection_matrix(0.5, 0.5, dtype=F64).dtype == F64
    assert turntable(3, dtype=F64).dtype == F64
    assert yaw_sweep(3, dtype=F64).dtype == F64
    labels64 = look_at(torch.tensor([0.3, 2.0]), 1.3, dtype=F64)
    assert world_to_camera(labels64).dtype == F64 and mirror_labels(labels64).dtype == F64
    close(look_at(torch.tensor([0.3, 2.0]), 1.3), labels64)
    assert look_at(1.0, 1.0, device="cpu").device.type == "cpu"


# ----------------------------------------------------------- bad input
def test_check_labels_accepts_and_returns_valid_labels():
    labels = look_at(1.0, 1.0)
    assert check_labels(labels) is labels


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (torch.zeros(3, 16), ValueError, r"labels must have shape \[B, 25\], got \[3, 16\]"),
        (torch.zeros(25), ValueError, r"labels must have shape \[B, 25\], got \[25\]"),
        (torch.zeros(0, 25), ValueError, r"labels must have shape \[B, 25\] with B >= 1"),
        (torch.zeros(2, 25, dtype=torch.int64), ValueError, r"labels must be a floating tensor"),
        ([[0.0] * 25], TypeError, r"labels must be a torch.Tensor, got list"),
    ],
)
def test_check_labels_rejects(value, error, match):
    with pytest.raises(error, match=match):
        check_labels(value)


def test_check_labels_names_non_finite_rows_and_argument():
    labels = torch.zeros(4, 25)
    labels[1, 3] = float("nan")
    labels[3, 20] = float("inf")
    with pytest.raises(ValueError, match=r"labels contains non-finite values \(nan/inf\) in rows \[1, 3\]"):
        check_labels(labels)
    with pytest.raises(ValueError, match=r"^cond contains non-finite"):
        check_labels(labels, name="cond")
    with pytest.raises(ValueError, match=r"labels contains non-finite"):
        mirror_labels(labels)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: look_at(NAN, 1.0), ValueError, "yaw must be finite"),
        (lambda: look_at(torch.tensor([0.0, INF]), 1.0), ValueError, "yaw must be finite"),
        (lambda: look_at(1.0, NAN), ValueError, "pitch must be finite"),
        (lambda: look_at(1.0, torch.zeros(2, 2)), ValueError, "pitch must be a number or a 1-D tensor"),
        (lambda: look_at(torch.zeros(0), 1.0), ValueError, "yaw must not be empty"),
        (lambda: look_at("a", 1.0), TypeError, "yaw must be a real number"),
        (lambda: look_at(1.0, 1.0, radius=INF), ValueError, "radius must be finite"),
        (lambda: look_at(1.0, 1.0, radius=0.0), ValueError, "radius must be > 0"),
        (lambda: look_at(1.0, 1.0, radius=-2.7), ValueError, "radius must be > 0"),
        (lambda: look_at(1.0, 1.0, focal=NAN), ValueError, "focal must be finite"),
        (lambda: look_at(1.0, 1.0, focal=0.0), ValueError, "focal must be > 0"),
        (lambda: look_at(1.0, 1.0, lookat=(0.0, 0.0)), ValueError, "lookat must be 3 numbers"),
        (lambda: look_at(1.0, 1.0, lookat=("a", 0, 0)), ValueError, "lookat must be 3 numbers"),
        (lambda: look_at(1.0, 1.0, lookat=(0.0, NAN, 0.0)), ValueError, "lookat must be finite"),
        (lambda: look_at(FRONTAL_YAW, FRONTAL_PITCH, lookat=(0, 0, 2.7)), ValueError, "lookat coincides"),
        (lambda: look_at(torch.zeros(2), torch.ones(3)), ValueError, "yaw has 2.*pitch has 3"),
        (lambda: look_at(1.0, 1.0, dtype=torch.int32), ValueError, "dtype must be a floating"),
        (lambda: intrinsics_matrix(-1.0), ValueError, "focal must be > 0"),
        (lambda: intrinsics_matrix(batch_size=0), ValueError, "batch_size must be >= 1"),
        (lambda: intrinsics_matrix(torch.ones(2), batch_size=3), ValueError, "focal has 2 values"),
        (lambda: fov_from_focal(0.0), ValueError, "focal must be > 0"),
        (lambda: fov_from_focal(torch.tensor([1.0, -1.0])), ValueError, "focal must be finite and > 0"),
        (lambda: focal_from_fov(math.pi), ValueError, r"fov must be in \(0, pi\)"),
        (lambda: focal_from_fov(torch.tensor([NAN])), ValueError, "fov must be finite"),
        (lambda: projection_matrix(0.0, 0.5), ValueError, "fovx must be in"),
        (lambda: projection_matrix(0.5, NAN), ValueError, "fovy must be finite"),
        (lambda: projection_matrix(0.5, 0.5, znear=0.0), ValueError, "znear must be > 0"),
        (lambda: projection_matrix(0.5, 0.5, znear=1.0, zfar=1.0), ValueError, "zfar must be > znear"),
        (lambda: turntable(0), ValueError, "frames must be >= 1"),
        (lambda: turntable(2.5), TypeError, "frames must be an integer"),
        (lambda: turntable(4, pitch=NAN), ValueError, "pitch must be finite"),
        (lambda: yaw_sweep(0), ValueError, "frames must be >= 1"),
        (lambda: yaw_sweep(4, yaw_range=INF), ValueError, "yaw_range must be finite"),
        (lambda: yaw_sweep(4, pitch_range=NAN), ValueError, "pitch_range must be finite"),
        (lambda: matrices_to_labels(torch.zeros(2, 3, 4), torch.zeros(2, 3, 3)), ValueError, "cam2world must have"),
        (lambda: matrices_to_labels(torch.zeros(2, 4, 4), torch.zeros(2, 9)), ValueError, "intrinsics must have shape"),
        (lambda: matrices_to_labels(torch.zeros(2, 4, 4), torch.zeros(3, 3, 3)), ValueError, "intrinsics has batch 3"),
        (lambda: matrices_to_labels(None, torch.zeros(1, 3, 3)), TypeError, "cam2world must be a torch.Tensor"),
        (lambda: camera_positions(torch.zeros(1, 24)), ValueError, "labels must have shape"),
        (lambda: world_to_camera(torch.full((1, 25), NAN)), ValueError, "labels contains non-finite"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_camera_yaw_from_labels():
    from cgsgan.camera import camera_yaw_deg

    yaw = torch.tensor([-1.0, -0.3, 0.0, 0.25, 1.2], dtype=torch.float64)
    labels = look_at(math.pi / 2 + yaw, torch.full_like(yaw, math.pi / 2 - 0.3), dtype=torch.float64)
    assert torch.allclose(camera_yaw_deg(labels), torch.rad2deg(yaw), atol=1e-9)
    assert torch.allclose(camera_yaw_deg(mirror_labels(labels)), -torch.rad2deg(yaw), atol=1e-9)
