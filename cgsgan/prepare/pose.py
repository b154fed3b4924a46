"""Head pose and crop from five face landmarks, in the cameras of the datasets.

The fitted model is the image a standard camera (radius 2.7, focal 4.2647,
looking at the origin; :func:`cgsgan.camera.orbit_labels`) makes of a mean face
placed at the world origin, followed by a similarity transform (scale, roll,
shift) into the photo:

    photo point = centre + size * rotate(roll) * (crop point - 0.5)

where a crop point is in units of the crop's width. The fit therefore gives
the camera label and the crop together: the crop is the photo region that
similarity maps onto the square, so a head at the origin rendered with the
label lines up with it (up to the face differing from the mean face, and the
photo's own perspective differing from the standard camera's).

The mean face has five points as the detector marks them (eye centres, nose
tip, mouth corners) in millimetres: the 2D layout of the common five-point
frontal face template (eyes 63 mm apart, nose tip 36 mm and mouth corners
72.7 mm below the eyes, mouth 52 mm wide) with typical depths (nose tip 30 mm,
mouth corners 5 mm in front of the eyes). It is placed as the built-in
synthetic heads are (eyes 0.1185 world units apart, their midpoint at
(0, 0.065, 0.15), so the origin lies in the middle of the head, between the
eyes and the mouth seen from the front), then scaled about the origin so that
the eyes are ``eye_width`` of the image width apart in a frontal view: 0.17 by
default, which leaves room above voluminous hair (the synthetic heads, whose
hair is flatter, are framed at 0.187). Two expression parameters let the mouth corners rise and
spread, so a smile is not read as a pitched head; the rise is the smile score.

Five points leave the pitch the least certain: a longer or shorter nose than
the mean face's reads as the camera looking from above or below (about 3
degrees per millimetre); yaw and roll are well determined. A fit is run on the
landmarks averaged with those of the mirrored photo mirrored back, so the
mirrored photo gives exactly the mirrored pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cgsgan.camera import DEFAULT_FOCAL, DEFAULT_RADIUS, orbit_labels

__all__ = ["EYE_WIDTH", "MEAN_FACE_MM", "FACE_ORIGIN", "HeadFit", "fit_head", "mirror_landmarks", "mean_face_world"]

# x toward the subject's left (world +x, the image's right in a frontal view), y up, z forward (toward the camera).
MEAN_FACE_MM = np.array(
    [
        [-31.5, 0.0, 0.0],  # eye on the image's left (the subject's right eye)
        [31.5, 0.0, 0.0],
        [0.0, -36.0, 30.0],  # nose tip
        [-26.0, -72.7, 5.0],  # mouth corner on the image's left
        [26.0, -72.7, 5.0],
    ]
)
EYE_DISTANCE = 0.1185  # world units between the eye centres of the synthetic heads ...
FACE_ORIGIN = np.array([0.0, 0.065, 0.15])  # ... and the midpoint between them
EYE_WIDTH = 0.17  # default framing of prepared photos: eye distance / image width in a frontal view
SYNTHETIC_EYE_WIDTH = 0.187  # the built-in synthetic heads' framing (and so the built-in network's)
MIRROR = [1, 0, 2, 4, 3]  # landmark order of the mirrored image
PRIOR_DEG = 20.0  # yaw and pitch: a weak pull toward frontal, only to choose between near-equal fits
PRIOR_MM = 10.0  # mouth rise and spread
PRIOR_WEIGHT = 0.02
SMILE_MM = 10.0  # a mouth-corner rise of this many mm is a smile of 1


def mean_face_world(rise_mm: float = 0.0, spread_mm: float = 0.0, eye_width: float = EYE_WIDTH) -> np.ndarray:
    """The mean face's five points [5, 3] in world units, the mouth corners raised and spread by the given mm,
    sized so that a frontal view shows the eyes ``eye_width`` of the image width apart."""
    points = MEAN_FACE_MM.copy()
    points[3] += (-spread_mm, rise_mm, 0.0)
    points[4] += (spread_mm, rise_mm, 0.0)
    # The scale about the origin at which the standard camera sees the eyes eye_width apart (at their depth).
    scale = eye_width * DEFAULT_RADIUS / (DEFAULT_FOCAL * EYE_DISTANCE + FACE_ORIGIN[2] * eye_width)
    return (points * (EYE_DISTANCE / 63.0) + FACE_ORIGIN) * scale


def _camera_axes(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Position, right, up and forward of the standard camera at azimuth yaw and elevation pitch (radians)."""
    direction = np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)])
    forward = -direction
    right = np.cross(forward, (0.0, 1.0, 0.0))
    right /= np.linalg.norm(right)
    return DEFAULT_RADIUS * direction, right, np.cross(right, forward), forward


def project_to_crop(points: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """World points [N, 3] seen by the standard camera at (yaw, pitch) radians: crop coordinates [N, 2]
    in units of the image width, (0, 0) the top-left corner, y down."""
    origin, right, up, forward = _camera_axes(yaw, pitch)
    rel = points - origin
    depth = rel @ forward
    return np.stack([rel @ right, -(rel @ up)], 1) * (DEFAULT_FOCAL / depth)[:, None] + 0.5


@dataclass(frozen=True)
class HeadFit:
    """A fitted head: the camera (yaw and pitch as the datasets' attributes give them, degrees) and the
    crop (``centre`` [2] and ``size`` in photo pixels, turned by ``roll_deg``), with the mouth's rise and
    spread (mm) and the mean landmark error as a fraction of the eye distance."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    size: float
    centre: tuple[float, float]
    rise_mm: float
    spread_mm: float
    error: float
    eye_width: float = EYE_WIDTH

    @property
    def smile(self) -> float:
        """0 (mouth corners where the mean face has them, or lower) to 1 (raised 10 mm or more)."""
        return float(np.clip(self.rise_mm / SMILE_MM, 0.0, 1.0))

    def label(self) -> Tensor:
        """The EG3D camera label [25] of the crop (float32)."""
        return orbit_labels(torch.tensor([self.yaw_deg], dtype=torch.float64),
                            torch.tensor([self.pitch_deg], dtype=torch.float64))[0]  # fmt: skip

    def crop_to_photo(self, points: np.ndarray) -> np.ndarray:
        """Crop coordinates [N, 2] (units of the crop width) -> photo pixels [N, 2]."""
        roll = math.radians(self.roll_deg)
        turn = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
        return np.asarray(self.centre) + self.size * (points - 0.5) @ turn.T

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> photo pixels [N, 2] through the fitted camera and crop."""
        crop = project_to_crop(points, math.radians(self.yaw_deg), math.radians(self.pitch_deg))
        return self.crop_to_photo(crop)

    def mean_face(self) -> np.ndarray:
        """The fitted face's five points [5, 3] in world units."""
        return mean_face_world(self.rise_mm, self.spread_mm, self.eye_width)

    def crop_matrix(self, resolution: int) -> np.ndarray:
        """The affine map [2, 3] from photo pixels to the pixels of a ``resolution``^2 crop (pixel centres
        at integers, as OpenCV's warpAffine takes it)."""
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        src = self.crop_to_photo(corners)
        dst = corners * resolution - 0.5
        a = np.c_[src, np.ones(3)]
        return np.linalg.solve(a, dst).T


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks [5, 2] found in the mirrored image -> the same points in the image, in the image's order."""
    out = landmarks[MIRROR].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def _predict(params: np.ndarray, eye_width: float) -> np.ndarray:
    yaw, pitch, roll, size, cx, cy, rise, spread = params
    crop = project_to_crop(mean_face_world(rise, spread, eye_width), yaw, pitch) - 0.5
    turn = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    return np.array([cx, cy]) + size * crop @ turn.T


def check_eye_width(eye_width: float) -> None:
    """ValueError unless ``eye_width`` (the framing) is a plausible eye distance / crop width."""
    if not 0.05 <= eye_width <= 0.5:
        raise ValueError(f"eye_width is the eye distance as a fraction of the crop width, 0.05 to 0.5; got {eye_width}")


def fit_head(landmarks: np.ndarray, eye_width: float = EYE_WIDTH, iterations: int = 100) -> HeadFit:
    """Fit the mean face to landmarks [5, 2] (photo pixels, in the detector's order) by Levenberg-Marquardt;
    ``eye_width`` frames the crop (module docstring)."""
    check_eye_width(eye_width)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"need 5 finite (x, y) landmarks, got an array of shape {landmarks.shape}")
    eyes = landmarks[1] - landmarks[0]
    eye_px = float(np.linalg.norm(eyes))
    if eye_px < 1e-6:
        raise ValueError("the two eye landmarks coincide")
    frontal = project_to_crop(mean_face_world(eye_width=eye_width), 0.0, 0.0)
    params = np.array([0.0, 0.0, math.atan2(eyes[1], eyes[0]), eye_px / (frontal[1, 0] - frontal[0, 0]), 0, 0, 0, 0])
    params[4:6] = landmarks.mean(0) - _predict(params, eye_width).mean(0)
    prior = PRIOR_WEIGHT / np.array([math.radians(PRIOR_DEG)] * 2 + [PRIOR_MM] * 2)

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([((_predict(p, eye_width) - landmarks) / eye_px).ravel(), prior * p[[0, 1, 6, 7]]])

    damping, r = 1e-3, residuals(params)
    for _ in range(iterations):
        jacobian = np.empty((r.size, params.size))
        for k in range(params.size):
            h = 1e-6 * max(1.0, abs(params[k]))
            step = np.zeros_like(params)
            step[k] = h
            jacobian[:, k] = (residuals(params + step) - r) / h
        normal = jacobian.T @ jacobian
        delta = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -jacobian.T @ r)
        trial = residuals(params + delta)
        if trial @ trial < r @ r:
            params, r, damping = params + delta, trial, damping / 3
        else:
            damping *= 4
        if np.abs(delta).max() < 1e-10 or damping > 1e8:
            break
    yaw, pitch, roll, size, cx, cy, rise, spread = params
    error = float(np.linalg.norm(_predict(params, eye_width) - landmarks, axis=1).mean() / eye_px)
    return HeadFit(
        yaw_deg=math.degrees(yaw),
        pitch_deg=math.degrees(pitch),
        roll_deg=math.degrees(math.remainder(roll, 2 * math.pi)),
        size=float(size),
        centre=(float(cx), float(cy)),
        rise_mm=float(rise),
        spread_mm=float(spread),
        error=error,
        eye_width=eye_width,
    )
