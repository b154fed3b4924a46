"""3DGS PLY files: one scene sample <-> a binary little-endian ``vertex`` element.

The layout is the one written by the original 3D Gaussian Splatting code and
accepted by engines and web viewers: float32 properties, in this order,

    x y z  nx ny nz  f_dc_0..2  f_rest_0..44  opacity  scale_0..2  rot_0..3

(62 properties, 248 bytes a Gaussian). Values are stored pre-activation, as in
``GaussianScene``: log-scales, opacity logits, unnormalised wxyz quaternions and
degree-0 SH coefficients. Normals are always zero. ``f_rest`` holds the SH
coefficients of degrees 1-3, channel-major (all of R, then G, then B); our
scenes are degree 0, so they are written as zeros. ``compact=True`` drops the
normals and ``f_rest`` (14 properties, 56 bytes a Gaussian), as CGS-GAN's own
exports do.

The reader takes any 3DGS-style PLY that ``plyfile`` can parse (binary of
either byte order or ascii, any property order, float32/float64), keeps the
degree-0 part and warns when non-zero higher-order SH coefficients are lost.

``up`` selects the stored world frame, see :mod:`cgsgan.io.frames`: ``"y"``
is ours (y up, face toward +z), ``"-y"`` the y-down COLMAP convention.
"""

from __future__ import annotations

import errno
import operator
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyHeaderParseError, PlyParseError

from cgsgan.atomic import atomic_write
from cgsgan.gaussians import GaussianScene
from cgsgan.io.frames import check_up, to_frame

# PLY properties of each GaussianScene field, in field-column order.
FIELD_PROPERTIES: dict[str, tuple[str, ...]] = {
    "xyz": ("x", "y", "z"),
    "scale": ("scale_0", "scale_1", "scale_2"),
    "rotation": ("rot_0", "rot_1", "rot_2", "rot_3"),
    "opacity": ("opacity",),
    "color": ("f_dc_0", "f_dc_1", "f_dc_2"),
}
REQUIRED_PROPERTIES: tuple[str, ...] = (
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
NUM_SH_REST = 45  # degree-3 SH: 15 coefficients x 3 channels
PLY_PROPERTIES: tuple[str, ...] = (
    ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    + tuple(f"f_rest_{i}" for i in range(NUM_SH_REST))
    + ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
)
PLY_PROPERTIES_COMPACT: tuple[str, ...] = tuple(
    p for p in PLY_PROPERTIES if p not in ("nx", "ny", "nz") and not p.startswith("f_rest_")
)


# --------------------------------------------------------------- shared helpers
def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function, float64 (opacity logits -> opacities)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))


def logit(p: np.ndarray) -> np.ndarray:
    """Inverse sigmoid of [0, 1] values, clamped away from 0 and 1 as GaussianScene.from_activated does."""
    eps = float(np.finfo(np.float32).eps)
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def scene_sample_arrays(scene: GaussianScene, sample: int, up: str) -> dict[str, np.ndarray]:
    """One validated sample of ``scene`` in frame ``up`` as float32 arrays [N, width] per field.

    Raises TypeError/ValueError naming the argument or field at fault: a bad
    ``sample`` or ``up``, an empty scene, or NaN/inf values (checked after the
    cast to float32, so float64 values too large for float32 are caught too).
    """
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"scene must be a GaussianScene, got {type(scene).__name__}")
    check_up(up)
    try:
        sample = operator.index(sample)
    except TypeError:
        raise TypeError(f"sample must be an integer, got {type(sample).__name__}") from None
    batch = scene.batch_size
    if not -batch <= sample < batch:
        raise ValueError(f"sample {sample} out of range for a scene batch of {batch}")
    if scene.num_gaussians == 0:
        raise ValueError("scene has no Gaussians (N = 0); nothing to write")
    one = to_frame(scene[sample].detach(), up)
    arrays = {}
    for name, value in one.tensors().items():
        array = value[0].to("cpu", torch.float32).numpy()
        bad = ~np.isfinite(array)
        if bad.any():
            rows = int(bad.any(axis=1).sum())
            raise ValueError(
                f"scene.{name} holds NaN/inf values (in float32) for {rows} of "
                f"{array.shape[0]} Gaussians of sample {sample}"
            )
        arrays[name] = array
    return arrays


def scene_from_arrays(arrays: dict[str, np.ndarray]) -> GaussianScene:
    """A B = 1 float32 scene from per-field arrays [N, width]."""
    return GaussianScene(
        **{name: torch.from_numpy(np.ascontiguousarray(a, np.float32))[None] for name, a in arrays.items()}
    )


def check_readable(path: str | os.PathLike, kind: str) -> Path:
    """``path`` as a Path; FileNotFoundError if there is no file there."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{kind} file not found", str(path))
    return path


# ------------------------------------------------------------------------ write
def write_ply(
    path: str | os.PathLike,
    scene: GaussianScene,
    sample: int = 0,
    compact: bool = False,
    up: str = "y",
) -> Path:
    """Write sample ``sample`` of ``scene`` as a binary little-endian 3DGS PLY.

    Full layout: 62 float32 properties (248 bytes a Gaussian) with zero normals
    and zero ``f_rest``; ``compact=True``: 14 properties (56 bytes). ``up`` is
    the stored frame ("y" ours, "-y" y-down). Returns the path written.
    """
    arrays = scene_sample_arrays(scene, sample, up)
    names = PLY_PROPERTIES_COMPACT if compact else PLY_PROPERTIES
    column = {name: i for i, name in enumerate(names)}
    n = arrays["xyz"].shape[0]
    # A plain [N, P] table viewed as a structured array: one vectorised fill per field.
    table = np.zeros((n, len(names)), dtype="<f4")
    for field, props in FIELD_PROPERTIES.items():
        table[:, [column[p] for p in props]] = arrays[field]
    vertex = table.view(np.dtype([(name, "<f4") for name in names]))[:, 0]
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    return atomic_write(path, ply.write)


# ------------------------------------------------------------------------- read
def _parse(path: Path) -> PlyData:
    """plyfile's parse, with its errors turned into ValueErrors naming the file."""
    try:
        # Memory-mapped read ('c', plyfile's default) is vectorised; the copy
        # made by read_ply detaches the result from the file.
        return PlyData.read(str(path))
    except OSError:
        raise
    except PlyParseError as e:
        part = "header" if isinstance(e, PlyHeaderParseError) else "data"
        if "end-of-file" in e.message:
            raise ValueError(f"{path}: PLY {part} is truncated ({e})") from e
        raise ValueError(f"{path}: malformed PLY {part} ({e})") from e
    except Exception as e:  # header errors, garbage bytes (decode errors), ...
        raise ValueError(f"{path}: not a readable PLY file ({type(e).__name__}: {e})") from e


def _warn_dropped_sh(path: Path, data: np.ndarray) -> None:
    """Warn when non-zero f_rest_* (view-dependent SH) values are about to be dropped."""
    rest = [p for p in data.dtype.names if p.startswith("f_rest_")]
    if any(np.any(data[p] != 0) for p in rest):
        warnings.warn(
            f"{path}: dropped {len(rest)} higher-order SH coefficients (f_rest_*) per Gaussian; "
            "GaussianScene is SH degree 0, so the colours lose their view dependence",
            UserWarning,
            stacklevel=3,
        )


def read_ply(path: str | os.PathLike, up: str = "y") -> GaussianScene:
    """Read a 3DGS PLY into a B = 1 float32 ``GaussianScene`` in our frame.

    ``up`` is the frame the file is stored in ("-y": converted back from y-down).
    Raises FileNotFoundError for a missing file and ValueError naming the file
    for anything unreadable: not a PLY, malformed header, truncated data, no
    ``vertex`` element, missing or list-typed required properties, no vertices.
    """
    check_up(up)
    path = check_readable(path, "PLY")
    ply = _parse(path)
    elements = [element.name for element in ply.elements]
    if "vertex" not in elements:
        raise ValueError(f"{path}: no 'vertex' element (elements: {elements})")
    data = ply["vertex"].data
    props = data.dtype.names or ()
    missing = [p for p in REQUIRED_PROPERTIES if p not in props]
    if missing:
        raise ValueError(f"{path}: vertex element lacks required properties: {' '.join(missing)}")
    lists = [p for p in REQUIRED_PROPERTIES if data.dtype[p].kind not in "fiu"]
    if lists:
        raise ValueError(f"{path}: properties must be numeric scalars, not lists: {' '.join(lists)}")
    if len(data) == 0:
        raise ValueError(f"{path}: vertex element has no Gaussians (0 vertices)")
    _warn_dropped_sh(path, data)
    arrays = {
        field: np.stack([data[p] for p in names], axis=-1).astype(np.float32)
        for field, names in FIELD_PROPERTIES.items()
    }
    return to_frame(scene_from_arrays(arrays), up, inverse=True)
