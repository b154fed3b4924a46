"""A plain, slow, per-pixel float64 re-statement of the INRIA 3DGS rasterizer.

Written independently of `cgsgan.render` (NumPy, loops, no tiles-as-tensors,
no matrix tricks) so that the backends can be checked against it. It follows
the CUDA code step by step: preprocess each Gaussian, list it in the tiles of
its `getRect`, sort each tile by depth (stable), then blend per pixel.
"""

from __future__ import annotations

import math

import numpy as np

TILE = 16


def _rotation(q):
    q = q / max(np.linalg.norm(q), 1e-12)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _preprocess(xyz, log_scale, quat, opacity_logit, color, cam2world, fx_n, fy_n, height, width):
    """Screen-space Gaussian or None if culled (INRIA preprocessCUDA)."""
    world2cam = np.linalg.inv(cam2world)
    p = world2cam[:3, :3] @ xyz + world2cam[:3, 3]
    if p[2] <= 0.2:
        return None
    tan_x, tan_y = 1 / (2 * fx_n), 1 / (2 * fy_n)
    focal_x, focal_y = width / (2 * tan_x), height / (2 * tan_y)
    r = _rotation(quat)
    s = np.diag(np.exp(log_scale))
    cov3 = r @ s @ s @ r.T
    lim_x, lim_y = 1.3 * tan_x, 1.3 * tan_y
    tx = min(lim_x, max(-lim_x, p[0] / p[2])) * p[2]
    ty = min(lim_y, max(-lim_y, p[1] / p[2])) * p[2]
    j = np.array(
        [
            [focal_x / p[2], 0, -focal_x * tx / p[2] ** 2],
            [0, focal_y / p[2], -focal_y * ty / p[2] ** 2],
        ]
    )
    w = world2cam[:3, :3]
    cov2 = j @ w @ cov3 @ w.T @ j.T
    cov2[0, 0] += 0.3
    cov2[1, 1] += 0.3
    det = cov2[0, 0] * cov2[1, 1] - cov2[0, 1] ** 2
    if det <= 0:
        return None
    conic = np.array([cov2[1, 1], -cov2[0, 1], cov2[0, 0]]) / det
    mid = 0.5 * (cov2[0, 0] + cov2[1, 1])
    lam = mid + math.sqrt(max(0.1, mid * mid - det))
    radius = math.ceil(3 * math.sqrt(lam))
    # Pixel coordinates through the projection matrix and ndc2Pix, as the CUDA code does.
    ndc_x = 2 * fx_n * p[0] / p[2]
    ndc_y = 2 * fy_n * p[1] / p[2]
    mean = np.array([((ndc_x + 1) * width - 1) / 2, ((ndc_y + 1) * height - 1) / 2])
    rgb = np.maximum(0.5 + 0.28209479177387814 * color, 0.0)
    opacity = 1 / (1 + math.exp(-opacity_logit))
    return dict(mean=mean, conic=conic, radius=radius, depth=p[2], rgb=rgb, opacity=opacity)


def _get_rect(mean, radius, grid_x, grid_y):
    def trunc(v):
        return int(v)  # C cast: toward zero

    x0 = min(grid_x, max(0, trunc((mean[0] - radius) / TILE)))
    y0 = min(grid_y, max(0, trunc((mean[1] - radius) / TILE)))
    x1 = min(grid_x, max(0, trunc((mean[0] + radius + TILE - 1) / TILE)))
    y1 = min(grid_y, max(0, trunc((mean[1] + radius + TILE - 1) / TILE)))
    return x0, x1, y0, y1


def render_reference(xyz, log_scale, quat, opacity_logit, color, label, height, width, background):
    """One image: arrays [N, k] of the scene, label [25], background [3].

    Returns image [3, H, W], alpha [H, W] and depth [H, W] as float64 numpy arrays.
    """
    cam2world = np.asarray(label[:16], dtype=np.float64).reshape(4, 4)
    fx_n, fy_n = float(label[16]), float(label[20])
    grid_x, grid_y = -(-width // TILE), -(-height // TILE)
    tiles: dict[tuple[int, int], list[tuple[float, int]]] = {}
    gaussians = []
    for i in range(len(xyz)):
        g = _preprocess(
            xyz[i], log_scale[i], quat[i], opacity_logit[i, 0], color[i], cam2world, fx_n, fy_n, height, width
        )
        gaussians.append(g)
        if g is None:
            continue
        x0, x1, y0, y1 = _get_rect(g["mean"], g["radius"], grid_x, grid_y)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                tiles.setdefault((tx, ty), []).append((g["depth"], i))

    image = np.zeros((3, height, width))
    alpha_out = np.zeros((height, width))
    depth_out = np.zeros((height, width))
    for (tx, ty), entries in tiles.items():
        order = [i for _, i in sorted(entries, key=lambda e: e[0])]  # stable: ties by index
        for py in range(ty * TILE, min((ty + 1) * TILE, height)):
            for px in range(tx * TILE, min((tx + 1) * TILE, width)):
                t = 1.0
                c = np.zeros(3)
                d = 0.0
                for i in order:
                    g = gaussians[i]
                    dx, dy = g["mean"][0] - px, g["mean"][1] - py
                    a, b, cc = g["conic"]
                    power = -0.5 * (a * dx * dx + cc * dy * dy) - b * dx * dy
                    if power > 0:
                        continue
                    alpha = min(0.99, g["opacity"] * math.exp(power))
                    if alpha < 1 / 255:
                        continue
                    test_t = t * (1 - alpha)
                    if test_t < 1e-4:
                        break
                    c += g["rgb"] * alpha * t
                    d += g["depth"] * alpha * t
                    t = test_t
                image[:, py, px] = c
                alpha_out[py, px] = 1 - t
                depth_out[py, px] = d
    image += (1 - alpha_out)[None] * np.asarray(background, dtype=np.float64)[:, None, None]
    return image, alpha_out, depth_out
