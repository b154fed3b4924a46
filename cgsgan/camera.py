"""EG3D-style camera labels, look-at poses, mirroring and orbit paths.

A *camera label* is a float tensor ``[B, 25]``, the conditioning vector of
EG3D, GGHead and CGS-GAN:

    labels[:, :16]   row-major 4x4 cam2world matrix, OpenCV camera axes
                     (x right, y down, z forward)
    labels[:, 16:]   row-major 3x3 intrinsics normalised by the image size:
                     [[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], f = 4.2647 for the
                     standard camera (field of view 2 * atan(1 / (2 f)) = 13.3738 deg)

World frame: y up, the face looks toward +z, the head lies inside
[-0.5, 0.5]^3 and cameras orbit the origin at radius 2.7. Angles follow
EG3D's ``LookAtPoseSampler``: yaw = pitch = pi / 2 is the frontal camera at
(0, 0, +2.7); larger yaw moves the camera toward +x, smaller pitch moves it up.

Everything is pure torch and batched; poses are built in float64 and cast to
the requested ``dtype`` (float32 by default) on the requested ``device``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_FOCAL",
    "FRONTAL_YAW",
    "FRONTAL_PITCH",
    "check_labels",
    "labels_to_matrices",
    "matrices_to_labels",
    "intrinsics_matrix",
    "fov_from_focal",
    "focal_from_fov",
    "look_at",
    "orbit_labels",
    "mirror_labels",
    "camera_positions",
    "camera_yaw_deg",
    "world_to_camera",
    "projection_matrix",
    "turntable",
    "yaw_sweep",
]

DEFAULT_RADIUS = 2.7
DEFAULT_FOCAL = 4.2647
FRONTAL_YAW = math.pi / 2
FRONTAL_PITCH = math.pi / 2

LABEL_DIM = 25
# Flat label indices negated by the dataset's x-flip: cam2world (0,1), (0,2), (0,3), (1,0), (2,0).
MIRROR_INDICES = (1, 2, 3, 4, 8)
# LookAtPoseSampler keeps pitch off the poles, where the look-at frame is undefined.
_PITCH_EPS = 1e-5
# Below this, the look-at frame is degenerate (forward is zero or parallel to world up).
_DEGENERATE_EPS = 1e-9

Scalar = float | Tensor
"""A python number, or a 0-d / 1-d tensor giving one value per camera."""


# --------------------------------------------------------------------- checks
def _fmt(values: Tensor, limit: int = 6) -> str:
    """Short printable form of the first few entries of a tensor."""
    flat = values.detach().reshape(-1).tolist()
    head = ", ".join(f"{v:g}" for v in flat[:limit])
    return f"[{head}{', ...' if len(flat) > limit else ''}]"


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype}")


def _check_real(value: object, name: str) -> float:
    """A finite python number, as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_count(value: object, name: str) -> int:
    """A python integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _resolve_device(device: torch.device | str | None, *values: object) -> torch.device:
    """``device`` if given, else the device of the first tensor argument, else CPU."""
    if device is not None:
        return torch.device(device)
    for value in values:
        if isinstance(value, Tensor):
            return value.device
    return torch.device("cpu")


def _as_vector(value: Scalar, name: str, device: torch.device) -> Tensor:
    """A number or 0-d/1-d tensor as a finite float64 vector [N] (autograd preserved)."""
    if isinstance(value, Tensor):
        if value.dim() > 1:
            raise ValueError(f"{name} must be a number or a 1-D tensor, got shape {list(value.shape)}")
        vec = value.to(device=device, dtype=torch.float64).reshape(-1)
    else:
        vec = torch.tensor([_check_real(value, name)], dtype=torch.float64, device=device)
    if vec.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not torch.isfinite(vec).all():
        raise ValueError(f"{name} must be finite, got {_fmt(vec)}")
    return vec


def _as_positive(value: Scalar, name: str, device: torch.device) -> Tensor:
    vec = _as_vector(value, name, device)
    if (vec <= 0).any():
        raise ValueError(f"{name} must be > 0, got {_fmt(vec)}")
    return vec


def _as_point(value: Sequence[float] | Tensor, name: str, device: torch.device) -> Tensor:
    """Three finite numbers as a float64 vector [3]."""
    try:
        point = torch.as_tensor(value, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be 3 numbers (x, y, z), got {value!r}") from None
    if point.shape != (3,):
        raise ValueError(f"{name} must be 3 numbers (x, y, z), got shape {list(point.shape)}")
    if not torch.isfinite(point).all():
        raise ValueError(f"{name} must be finite, got {_fmt(point)}")
    return point


def _broadcast(**named: Tensor) -> list[Tensor]:
    """Broadcast per-camera vectors to one batch size B, naming them on failure."""
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in named.values()))
    except RuntimeError:
        sizes = ", ".join(f"{k} has {t.numel()}" for k, t in named.items())
        raise ValueError(f"cannot broadcast to one batch size: {sizes} values") from None
    return [t.expand(shape) for t in named.values()]


def check_labels(labels: Tensor, name: str = "labels") -> Tensor:
    """Validate camera labels [B, 25] (floating, B >= 1, all finite) and return them."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 2 or labels.shape[1] != LABEL_DIM:
        raise ValueError(f"{name} must have shape [B, {LABEL_DIM}], got {list(labels.shape)}")
    if labels.shape[0] < 1:
        raise ValueError(f"{name} must have shape [B, {LABEL_DIM}] with B >= 1, got {list(labels.shape)}")
    if not labels.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {labels.dtype}")
    finite_rows = torch.isfinite(labels).all(dim=1)
    if not finite_rows.all():
        bad = torch.nonzero(~finite_rows).flatten().tolist()
        rows = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise ValueError(f"{name} contains non-finite values (nan/inf) in rows [{rows}]")
    return labels


# ----------------------------------------------------------- labels/matrices
def labels_to_matrices(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Split labels [B, 25] into (cam2world [B, 4, 4], intrinsics [B, 3, 3]) (copies, not views)."""
    labels = check_labels(labels)
    batch = labels.shape[0]
    cam2world = labels[:, :16].reshape(batch, 4, 4).clone()
    intrinsics = labels[:, 16:].reshape(batch, 3, 3).clone()
    return cam2world, intrinsics


def matrices_to_labels(cam2world: Tensor, intrinsics: Tensor) -> Tensor:
    """Pack cam2world [B, 4, 4] and intrinsics [B, 3, 3] (or [1, 3, 3]) into labels [B, 25].

    The result has cam2world's dtype; intrinsics with batch 1 are shared by all B cameras.
    """
    for name, value, size in (("cam2world", cam2world, 4), ("intrinsics", intrinsics, 3)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() != 3 or value.shape[1:] != (size, size) or value.shape[0] < 1:
            raise ValueError(f"{name} must have shape [B, {size}, {size}], got {list(value.shape)}")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got {value.dtype}")
    batch = cam2world.shape[0]
    if intrinsics.shape[0] not in (1, batch):
        raise ValueError(f"intrinsics has batch {intrinsics.shape[0]}, but cam2world has {batch}")
    flat_k = intrinsics.to(cam2world.dtype).reshape(-1, 9).expand(batch, 9)
    return torch.cat((cam2world.reshape(batch, 16), flat_k), dim=1)


def _intrinsics(focal: Tensor) -> Tensor:
    """Normalised intrinsics [B, 3, 3] from focal lengths [B]."""
    zero, half, one = torch.zeros_like(focal), torch.full_like(focal, 0.5), torch.ones_like(focal)
    rows = (focal, zero, half, zero, focal, half, zero, zero, one)
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def intrinsics_matrix(
    focal: Scalar = DEFAULT_FOCAL,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Normalised intrinsics [B, 3, 3]: [[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]].

    ``focal`` may be one value or one per camera; B = batch_size, or len(focal)
    when batch_size is 1.
    """
    _check_dtype(dtype)
    batch_size = _check_count(batch_size, "batch_size")
    dev = _resolve_device(device, focal)
    focal_t = _as_positive(focal, "focal", dev)
    try:
        shape = torch.broadcast_shapes(focal_t.shape, (batch_size,))
    except RuntimeError:
        raise ValueError(f"focal has {focal_t.numel()} values, but batch_size is {batch_size}") from None
    return _intrinsics(focal_t.expand(shape)).to(dtype)


# ----------------------------------------------------------- field of view
def fov_from_focal(focal: Scalar) -> Scalar:
    """Field of view in radians, 2 * atan(1 / (2 f)), of a normalised focal length (float or tensor)."""
    if isinstance(focal, Tensor):
        if not (torch.isfinite(focal) & (focal > 0)).all():
            raise ValueError(f"focal must be finite and > 0, got {_fmt(focal)}")
        return 2 * torch.atan(1 / (2 * focal))
    focal = _check_real(focal, "focal")
    if focal <= 0:
        raise ValueError(f"focal must be > 0, got {focal}")
    return 2 * math.atan(1 / (2 * focal))


def focal_from_fov(fov: Scalar) -> Scalar:
    """Normalised focal length 1 / (2 tan(fov / 2)) of a field of view in radians (float or tensor)."""
    if isinstance(fov, Tensor):
        if not (torch.isfinite(fov) & (fov > 0) & (fov < math.pi)).all():
            raise ValueError(f"fov must be finite and in (0, pi), got {_fmt(fov)}")
        return 1 / (2 * torch.tan(fov / 2))
    fov = _check_real(fov, "fov")
    if not 0 < fov < math.pi:
        raise ValueError(f"fov must be in (0, pi) radians, got {fov}")
    return 1 / (2 * math.tan(fov / 2))


# ------------------------------------------------------------------ look-at
def _orbit_origin(yaw: Tensor, pitch: Tensor, radius: Tensor) -> Tensor:
    """Camera origins [B, 3] on the sphere, as EG3D's LookAtPoseSampler places them."""
    pitch = pitch.clamp(_PITCH_EPS, math.pi - _PITCH_EPS)
    # Polar angle from +y; arccos(1 - 2 v) maps pitch/pi uniformly in height.
    phi = torch.arccos(1 - 2 * (pitch / math.pi))
    sin_phi = torch.sin(phi)
    x = radius * sin_phi * torch.cos(math.pi - yaw)
    y = radius * torch.cos(phi)
    z = radius * sin_phi * torch.sin(math.pi - yaw)
    return torch.stack((x, y, z), dim=-1)


def _look_at_cam2world(origin: Tensor, target: Tensor) -> Tensor:
    """OpenCV cam2world [B, 4, 4] at ``origin`` [B, 3] looking at ``target`` [B, 3] (EG3D's
    create_cam2world_matrix: world up (0, 1, 0) hint, so the camera's y axis points world-down)."""
    forward = target - origin
    if (forward.norm(dim=-1) < _DEGENERATE_EPS).any():
        raise ValueError("lookat coincides with a camera position; the viewing direction is undefined")
    forward = F.normalize(forward, dim=-1)
    up_hint = torch.tensor((0.0, 1.0, 0.0), dtype=origin.dtype, device=origin.device).expand_as(forward)
    side = torch.linalg.cross(up_hint, forward, dim=-1)
    if (side.norm(dim=-1) < _DEGENERATE_EPS).any():
        raise ValueError("a camera looks straight up or down at lookat; the look-at pose is undefined")
    right = -F.normalize(side, dim=-1)
    up = F.normalize(torch.linalg.cross(forward, right, dim=-1), dim=-1)
    rotation = torch.stack((right, up, forward), dim=-1)  # columns are the camera axes
    top = torch.cat((rotation, origin.unsqueeze(-1)), dim=-1)  # [B, 3, 4]
    bottom = torch.tensor((0.0, 0.0, 0.0, 1.0), dtype=origin.dtype, device=origin.device)
    return torch.cat((top, bottom.expand(top.shape[0], 1, 4)), dim=1)


def look_at(
    yaw: Scalar,
    pitch: Scalar,
    radius: Scalar = DEFAULT_RADIUS,
    lookat: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    focal: Scalar = DEFAULT_FOCAL,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Camera labels [B, 25] of EG3D's ``LookAtPoseSampler.sample`` with zero stddev.

    yaw, pitch, radius and focal are numbers or 1-D tensors, broadcast together
    to B cameras; pitch is clamped to [1e-5, pi - 1e-5] as in the reference.
    The camera sits at radius * (sin(phi) cos(pi - yaw), cos(phi), sin(phi) sin(pi - yaw)),
    phi = arccos(1 - 2 pitch / pi), and looks at ``lookat`` [3].

    Note: as in the reference, the camera origin is *not* offset by ``lookat``;
    the orbit is always centred on the world origin and ``lookat`` only turns
    the camera.

    Poses are computed in float64 and cast to ``dtype``; ``device`` defaults to
    the device of the first tensor argument, else CPU.
    """
    _check_dtype(dtype)
    dev = _resolve_device(device, yaw, pitch, radius, lookat, focal)
    yaw_t, pitch_t, radius_t, focal_t = _broadcast(
        yaw=_as_vector(yaw, "yaw", dev),
        pitch=_as_vector(pitch, "pitch", dev),
        radius=_as_positive(radius, "radius", dev),
        focal=_as_positive(focal, "focal", dev),
    )
    target = _as_point(lookat, "lookat", dev)
    origin = _orbit_origin(yaw_t, pitch_t, radius_t)
    cam2world = _look_at_cam2world(origin, target.expand_as(origin))
    return matrices_to_labels(cam2world, _intrinsics(focal_t)).to(dtype)


def orbit_labels(yaw_deg: Tensor, elevation_deg: Tensor) -> Tensor:
    """Labels [N, 25] (float32) of the standard cameras (radius 2.7, focal 4.2647, looking at the
    origin) at azimuth ``yaw_deg`` [N] from the frontal view (+ toward +x) and elevation
    ``elevation_deg`` [N] above the horizontal (+ = camera above), in degrees.

    look_at's pitch is a polar parameter (pi / 2 is level; the camera height is
    radius * (1 - 2 pitch / pi)), so an elevation e maps to pi / 2 (1 - sin e).
    """
    yaw = FRONTAL_YAW + torch.deg2rad(yaw_deg)
    pitch = FRONTAL_PITCH * (1 - torch.sin(torch.deg2rad(elevation_deg)))
    return look_at(yaw, pitch, radius=DEFAULT_RADIUS, focal=DEFAULT_FOCAL)


# --------------------------------------------------------------- transforms
def mirror_labels(labels: Tensor) -> Tensor:
    """Labels [B, 25] of the x-mirrored cameras (the dataset's x-flip augmentation).

    Negates cam2world entries (0,1), (0,2), (0,3), (1,0), (2,0), i.e. S M S with
    S = diag(-1, 1, 1, 1), a reflection of world x. Its own inverse; the input
    is not modified and the intrinsics are unchanged.
    """
    mirrored = check_labels(labels).clone()
    index = list(MIRROR_INDICES)
    mirrored[:, index] = -mirrored[:, index]
    return mirrored


def camera_positions(labels: Tensor) -> Tensor:
    """World positions of the cameras [B, 3] (the translation column of cam2world)."""
    return check_labels(labels)[:, [3, 7, 11]].clone()


def camera_yaw_deg(labels: Tensor) -> Tensor:
    """Azimuth of each camera from the frontal view, in degrees [B] (+ toward +x; 0 = in front of the face).

    From the camera position (x, z): atan2(x, z), so a ``look_at(pi / 2 + a, ...)`` camera has yaw a."""
    position = camera_positions(labels)
    return torch.rad2deg(torch.atan2(position[:, 0], position[:, 2]))


def world_to_camera(labels: Tensor) -> Tensor:
    """world2cam [B, 4, 4], the inverse of cam2world, in OpenCV camera axes.

    Uses the rigid inverse [R^T, -R^T t], so it assumes the rotation block of
    cam2world is orthonormal (true for every pose built here or by EG3D).
    """
    cam2world, _ = labels_to_matrices(labels)
    rot_t = cam2world[:, :3, :3].transpose(-1, -2)
    trans = -rot_t @ cam2world[:, :3, 3:]
    top = torch.cat((rot_t, trans), dim=-1)
    bottom = cam2world.new_tensor((0.0, 0.0, 0.0, 1.0)).expand(top.shape[0], 1, 4)
    return torch.cat((top, bottom), dim=1)


def projection_matrix(
    fovx: Scalar,
    fovy: Scalar,
    znear: float = 0.01,
    zfar: float = 10.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Perspective projection [B, 4, 4] for column vectors (clip = P @ cam), exactly as the
    official CustomCam builds it (z_sign +1; kept for viewer interop, its depth row is the
    reference's own and does not map [znear, zfar] to [-1, 1]).

    P[0,0] = 1/tan(fovx/2), P[1,1] = 1/tan(fovy/2), P[2,2] = (zfar+znear)/(zfar-znear),
    P[2,3] = -zfar*znear/(zfar-znear), P[3,2] = 1. The official code stores P^T
    (row-vector convention); transpose for that. fovx/fovy are radians, numbers
    or 1-D tensors broadcast to B.
    """
    _check_dtype(dtype)
    dev = _resolve_device(device, fovx, fovy)
    fovs = {"fovx": _as_vector(fovx, "fovx", dev), "fovy": _as_vector(fovy, "fovy", dev)}
    for name, fov in fovs.items():
        if ((fov <= 0) | (fov >= math.pi)).any():
            raise ValueError(f"{name} must be in (0, pi) radians, got {_fmt(fov)}")
    fx, fy = _broadcast(**fovs)
    znear, zfar = _check_real(znear, "znear"), _check_real(zfar, "zfar")
    if znear <= 0:
        raise ValueError(f"znear must be > 0, got {znear}")
    if zfar <= znear:
        raise ValueError(f"zfar must be > znear ({znear}), got {zfar}")
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    depth_scale = one * ((zfar + znear) / (zfar - znear))
    depth_shift = one * (-(zfar * znear) / (zfar - znear))
    rows = (
        1 / torch.tan(fx / 2), zero, zero, zero,
        zero, 1 / torch.tan(fy / 2), zero, zero,
        zero, zero, depth_scale, depth_shift,
        zero, zero, one, zero,
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(-1, 4, 4).to(dtype)


# -------------------------------------------------------------- orbit paths
def _phase(frames: int, device: torch.device) -> Tensor:
    """2 pi t / frames for t = 0 .. frames - 1, float64 [T]."""
    return torch.arange(frames, dtype=torch.float64, device=device) * (2 * math.pi / frames)


def turntable(
    frames: int,
    pitch: float = FRONTAL_PITCH,
    radius: float = DEFAULT_RADIUS,
    focal: float = DEFAULT_FOCAL,
    lookat: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Labels [T, 25] of a full circle at fixed pitch: yaw = pi/2 + 2 pi t / T, starting frontal."""
    frames = _check_count(frames, "frames")
    dev = _resolve_device(device, pitch, radius, focal, lookat)
    yaw = FRONTAL_YAW + _phase(frames, dev)
    return look_at(yaw, pitch, radius, lookat, focal, dtype=dtype, device=dev)


def yaw_sweep(
    frames: int,
    yaw_range: float = 0.35,
    pitch_range: float = 0.15,
    radius: float = DEFAULT_RADIUS,
    focal: float = DEFAULT_FOCAL,
    lookat: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Labels [T, 25] of EG3D's elliptical video sweep around the frontal view:
    yaw = pi/2 + yaw_range sin(2 pi t / T), pitch = pi/2 + pitch_range cos(2 pi t / T)."""
    frames = _check_count(frames, "frames")
    yaw_range = _check_real(yaw_range, "yaw_range")
    pitch_range = _check_real(pitch_range, "pitch_range")
    dev = _resolve_device(device, radius, focal, lookat)
    phase = _phase(frames, dev)
    yaw = FRONTAL_YAW + yaw_range * torch.sin(phase)
    pitch = FRONTAL_PITCH + pitch_range * torch.cos(phase)
    return look_at(yaw, pitch, radius, lookat, focal, dtype=dtype, device=dev)
