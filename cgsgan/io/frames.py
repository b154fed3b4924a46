"""World frames of exported scenes.

Our scenes live in a y-up frame: the face looks toward +z and the head fits in
[-0.5, 0.5]^3. Many viewers and the COLMAP-derived 3DGS tools assume y points
*down*. ``up="-y"`` stores a scene rotated 180 degrees about the x axis,

    Rx = diag(1, -1, -1):   (x, y, z) -> (x, -y, -z),

which turns y-up into y-down and keeps the frame right-handed. Each Gaussian's
orientation is left-multiplied by the quaternion of that rotation,
q_x(pi) = (0, 1, 0, 0) in wxyz, so its covariance R S S^T R^T becomes
Rx (R S S^T R^T) Rx^T. Scales, opacities and colours do not change.
"""

from __future__ import annotations

import torch

from cgsgan.gaussians import GaussianScene

UP_AXES = ("y", "-y")


def check_up(up: str) -> str:
    """Return ``up`` if it names a supported frame, else raise ValueError."""
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {UP_AXES}, got {up!r}")
    return up


def to_frame(scene: GaussianScene, up: str, *, inverse: bool = False) -> GaussianScene:
    """Express ``scene`` (our y-up frame) in the frame whose up axis is ``up``.

    ``up="y"`` returns ``scene`` itself. ``up="-y"`` applies Rx (see the module
    docstring): xyz [B, N, 3] -> (x, -y, -z) and rotation [B, N, 4]
    (w, x, y, z) -> (-x, w, -z, y), i.e. q_x(pi) * q.

    ``inverse=True`` maps a scene stored in frame ``up`` back into ours. The
    point map is the same (Rx is an involution), but the quaternion is
    multiplied by q_x(-pi) = (0, -1, 0, 0): (w, x, y, z) -> (x, -w, z, -y), so a
    round trip returns bit-identical quaternions rather than their negatives.
    Only negations and permutations are involved, so the conversion is exact.
    """
    check_up(up)
    if up == "y":
        return scene
    x, y, z = scene.xyz.unbind(-1)
    w, qx, qy, qz = scene.rotation.unbind(-1)
    if inverse:
        rotation = torch.stack((qx, -w, qz, -qy), dim=-1)
    else:
        rotation = torch.stack((-qx, w, -qz, qy), dim=-1)
    return scene.with_fields(xyz=torch.stack((x, -y, -z), dim=-1), rotation=rotation)
