"""The ``.splat`` format of antimatter15's WebGL splat viewer (32 bytes a Gaussian).

Per Gaussian, little endian, no header:

    position  3 x float32   world position
    scale     3 x float32   *activated* standard deviations, exp(log-scale)
    rgba      4 x uint8     (0.5 + C0 * f_dc) * 255 and sigmoid(opacity) * 255
    rotation  4 x uint8     normalised quaternion (w, x, y, z) * 128 + 128

Bytes are clipped to [0, 255] and truncated (not rounded), and the Gaussians are
sorted by decreasing exp(scale_0 + scale_1 + scale_2) * sigmoid(opacity), as the
viewer's ``convert.py`` does (we use a stable sort). Reading inverts this, with
the loss of the 8-bit quantisation. ``up`` selects the stored world frame
exactly as for PLY (see :mod:`cgsgan.io.frames`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cgsgan.atomic import atomic_write
from cgsgan.gaussians import SH_C0, GaussianScene
from cgsgan.io.frames import check_up, to_frame
from cgsgan.io.ply import check_readable, scene_sample_arrays, sigmoid

# 12 + 12 + 4 + 4 = 32 bytes, no padding.
SPLAT_DTYPE = np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def _to_bytes(values: np.ndarray) -> np.ndarray:
    """Map [0, 1]-ish floats [...] to uint8 like convert.py: * 255, clip, truncate."""
    return (values * 255.0).clip(0, 255).astype(np.uint8)


def _encode_rotation(rotation: np.ndarray) -> np.ndarray:
    """Quaternions [N, 4] (wxyz, any norm) -> uint8 [N, 4]; a zero quaternion becomes identity."""
    q = rotation.astype(np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    return (q * 128.0 + 128.0).clip(0, 255).astype(np.uint8)


def splat_order(scale: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Indices [N] sorting by decreasing exp(sum of log-scales [N, 3]) * sigmoid(opacity [N, 1]).

    Compared in log space (sum of log-scales + log sigmoid) to avoid overflow;
    the order is the same, and ties keep their input order.
    """
    key = scale.astype(np.float64).sum(axis=-1) - np.logaddexp(0.0, -opacity[:, 0].astype(np.float64))
    return np.argsort(-key, kind="stable")


def write_splat(path: str | os.PathLike, scene: GaussianScene, sample: int = 0, up: str = "y") -> Path:
    """Write sample ``sample`` of ``scene`` as a .splat file (32 bytes a Gaussian); returns the path."""
    a = scene_sample_arrays(scene, sample, up)
    order = splat_order(a["scale"], a["opacity"])
    out = np.empty(len(order), dtype=SPLAT_DTYPE)
    out["xyz"] = a["xyz"][order]
    out["scale"] = np.exp(a["scale"][order])
    rgb = 0.5 + SH_C0 * a["color"][order].astype(np.float64)
    out["rgba"] = _to_bytes(np.concatenate([rgb, sigmoid(a["opacity"][order])], axis=-1))
    out["rot"] = _encode_rotation(a["rotation"][order])
    return atomic_write(path, lambda f: f.write(memoryview(out).cast("B")))


def read_splat(path: str | os.PathLike, up: str = "y") -> GaussianScene:
    """Read a .splat file into a B = 1 float32 ``GaussianScene`` in our frame (lossy, see module docs).

    Raises FileNotFoundError for a missing file and ValueError naming the file
    and its size when the size is zero or not a multiple of 32 bytes.
    """
    check_up(up)
    path = check_readable(path, "splat")
    size = path.stat().st_size
    if size == 0 or size % SPLAT_DTYPE.itemsize:
        raise ValueError(
            f"{path}: a .splat file holds {SPLAT_DTYPE.itemsize} bytes a Gaussian, but this one has {size} bytes"
        )
    data = np.fromfile(path, dtype=SPLAT_DTYPE)
    # Zero or negative scales (foreign files) would give -inf/NaN log-scales.
    scales = np.maximum(data["scale"], np.finfo(np.float32).tiny)
    rgba = data["rgba"].astype(np.float32) / 255.0
    rotation = (data["rot"].astype(np.float32) - 128.0) / 128.0
    scene = GaussianScene.from_activated(  # clamps opacities away from 0 and 1 before the logit
        xyz=torch.from_numpy(data["xyz"].copy())[None],
        scales=torch.from_numpy(scales)[None],
        rotations=torch.from_numpy(rotation)[None],
        opacities=torch.from_numpy(rgba[:, 3:])[None],
        rgb=torch.from_numpy(np.ascontiguousarray(rgba[:, :3]))[None],
    )
    return to_frame(scene, up, inverse=True)
