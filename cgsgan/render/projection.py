"""Project 3D Gaussians to screen-space 2D Gaussians, as the INRIA 3DGS rasterizer does.

Shared by every backend, differentiable with plain autograd, vectorised over
[B, N]. The conventions (see the design brief, "Renderer semantics"):

- world-to-camera is the inverse of the label's cam2world (OpenCV axes);
  Gaussians with camera-space depth <= 0.2 are culled;
- the 2D covariance is J W Sigma W^T J^T + 0.3 I, with the camera-space x/z
  and y/z clamped to 1.3 * tan(half fov) inside the Jacobian J only;
- pixel i of a row sits at coordinate i: x_pix = fx_pix * x / z + (W - 1) / 2,
  the principal point is the image centre (the label's cx, cy are ignored);
- the 3-sigma radius ceil(3 sqrt(lambda_max)) uses the INRIA 0.1 floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from cgsgan.gaussians import GaussianScene, sh_to_rgb

NEAR_PLANE = 0.2
DILATION = 0.3  # low-pass filter added to the 2D covariance diagonal
FRUSTUM_SLACK = 1.3  # the Jacobian's x/z, y/z clamp, in units of tan(half fov)
ALPHA_MIN = 1.0 / 255.0  # contributions below this alpha are skipped


@dataclass
class Projection:
    """Screen-space Gaussians of B images; every tensor is [B, N, ...]."""

    means2d: Tensor  # [B, N, 2] pixel coordinates (x, y)
    conics: Tensor  # [B, N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    cov2d: Tensor  # [B, N, 3] (xx, xy, yy) of the dilated 2D covariance
    depths: Tensor  # [B, N] camera-space z
    log_opacities: Tensor  # [B, N] natural log of the opacity
    colors: Tensor  # [B, N, 3] rgb from SH degree 0, clamped at 0
    radii: Tensor  # [B, N] int32 3-sigma radius in pixels, 0 where culled


def camera_from_labels(labels: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """World-to-camera rotation [B, 3, 3], translation [B, 3] and pixel focals [B, 2] (fx, fy)."""
    cam2world = labels[:, :16].reshape(-1, 4, 4)
    rot_c2w, t_c2w = cam2world[:, :3, :3], cam2world[:, :3, 3]
    rot_w2c = rot_c2w.transpose(1, 2)  # rigid inverse: cam2world is orthonormal
    t_w2c = -(rot_w2c @ t_c2w.unsqueeze(-1)).squeeze(-1)
    # INRIA: focal = size / (2 tan(fov / 2)) with fov = 2 atan(1 / (2 f)), i.e. size * f.
    focals = torch.stack([labels[:, 16] * width, labels[:, 20] * height], dim=-1)
    return rot_w2c, t_w2c, focals


def _rotation_columns(quats: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Columns of the rotation matrices of unit quaternions given as (w, x, y, z) [B, N] each.

    Column k is local axis k in world coordinates: three [B, N] tensors.
    """
    w, x, y, z = quats
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    return [
        (1 - 2 * (yy + zz), 2 * (xy + wz), 2 * (xz - wy)),
        (2 * (xy - wz), 1 - 2 * (xx + zz), 2 * (yz + wx)),
        (2 * (xz + wy), 2 * (yz - wx), 1 - 2 * (xx + yy)),
    ]


def project(scene: GaussianScene, labels: Tensor, height: int, width: int) -> Projection:
    """Project scene b with camera label b (labels [B, 25]) onto a height x width image."""
    rot_w2c, t_w2c, focals = camera_from_labels(labels, height, width)
    w = rot_w2c.unsqueeze(-1)  # [B, 3, 3, 1]: w[:, i, j] broadcasts against [B, N]

    # Fields as contiguous [B, N] rows: elementwise work on them is much faster than on [B, N, 3].
    px, py, pz = scene.xyz.permute(2, 0, 1).contiguous()
    x = w[:, 0, 0] * px + w[:, 0, 1] * py + w[:, 0, 2] * pz + t_w2c[:, 0:1]
    y = w[:, 1, 0] * px + w[:, 1, 1] * py + w[:, 1, 2] * pz + t_w2c[:, 1:2]
    z = w[:, 2, 0] * px + w[:, 2, 1] * py + w[:, 2, 2] * pz + t_w2c[:, 2:3]
    in_front = z > NEAR_PLANE
    z_safe = torch.where(in_front, z, torch.ones_like(z))  # keeps culled Gaussians finite (and their grads 0)

    fx, fy = focals[:, 0:1], focals[:, 1:2]  # [B, 1]
    u, v = x / z_safe, y / z_safe
    lim_x = FRUSTUM_SLACK * width / (2 * fx)  # 1.3 tan(fovx / 2)
    lim_y = FRUSTUM_SLACK * height / (2 * fy)
    u_j = torch.maximum(torch.minimum(u, lim_x), -lim_x)
    v_j = torch.maximum(torch.minimum(v, lim_y), -lim_y)

    # Rows of J W, the Jacobian of the perspective map at the (clamped) centre times world-to-camera:
    # J W = [[fx / z (W0 - u W2)], [fy / z (W1 - v W2)]] with Wi the rows of W.
    gx, gy = fx / z_safe, fy / z_safe
    gxu, gyv = gx * u_j, gy * v_j
    jw_x = [gx * w[:, 0, j] - gxu * w[:, 2, j] for j in range(3)]
    jw_y = [gy * w[:, 1, j] - gyv * w[:, 2, j] for j in range(3)]

    # cov2d = sum over local axes k of s_k^2 (J W r_k)(J W r_k)^T, plus the 0.3 dilation.
    scales = scene.scale.exp().permute(2, 0, 1)
    columns = _rotation_columns(F.normalize(scene.rotation, dim=-1).permute(2, 0, 1).contiguous())
    cov_xx = cov_xy = cov_yy = None
    for k, (r0, r1, r2) in enumerate(columns):
        ax = (jw_x[0] * r0 + jw_x[1] * r1 + jw_x[2] * r2) * scales[k]
        ay = (jw_y[0] * r0 + jw_y[1] * r1 + jw_y[2] * r2) * scales[k]
        xx, xy, yy = ax * ax, ax * ay, ay * ay
        cov_xx, cov_xy, cov_yy = (xx, xy, yy) if k == 0 else (cov_xx + xx, cov_xy + xy, cov_yy + yy)
    cov_xx, cov_yy = cov_xx + DILATION, cov_yy + DILATION

    det = cov_xx * cov_yy - cov_xy * cov_xy
    visible = in_front & (det > 0) & torch.isfinite(det)
    det = torch.where(visible, det, torch.ones_like(det))
    conics = torch.stack([cov_yy / det, -cov_xy / det, cov_xx / det], dim=-1)
    means2d = torch.stack([fx * u + (width - 1) / 2, fy * v + (height - 1) / 2], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (cov_xx + cov_yy)
        lambda_max = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        radii = torch.ceil(3 * torch.sqrt(lambda_max))
        radii = torch.where(visible & torch.isfinite(radii), radii, torch.zeros_like(radii)).to(torch.int32)

    return Projection(
        means2d=means2d,
        conics=conics,
        cov2d=torch.stack([cov_xx, cov_xy, cov_yy], dim=-1),
        depths=z,
        log_opacities=-F.softplus(-scene.opacity.squeeze(-1)),  # log(sigmoid(x)), stable
        colors=sh_to_rgb(scene.color),
        radii=radii,
    )
