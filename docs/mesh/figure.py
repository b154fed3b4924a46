"""The README's mesh picture: a head of a network and the procedural demo head as meshes, at three yaws.

    python docs/mesh/figure.py                        # the built-in network -> docs/mesh/meshes.png (seconds)
    python docs/mesh/figure.py --network RUN --out meshes.png

Each mesh is `cgsgan export --mesh` at its defaults (`scene_to_mesh`: grid 160,
level 0.5, the largest piece). The network's head is seed 0 at truncation 0.8, as in
`cgsgan generate`. Meshes are drawn by a plain painter's rasteriser: triangles far to
near, each filled with its vertices' mean colour, shaded by how squarely it faces the
camera; the cameras are the standard ones (radius 2.7) at 0, 30 and 90 degrees yaw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cgsgan.apps.heads import seed_latents
from cgsgan.apps.mesh import scene_to_mesh
from cgsgan.camera import orbit_labels
from cgsgan.io import load_network
from cgsgan.synthetic import demo_head

YAWS, SIZE, ZOOM = (0.0, 30.0, 90.0), 320, 0.85  # zoomed out a little from the training frame


def draw(mesh, yaw_deg: float, size: int = SIZE) -> Image.Image:
    """``mesh`` (trimesh, our frame) seen from the standard camera at ``yaw_deg``, over white."""
    label = orbit_labels(torch.tensor([yaw_deg]), torch.tensor([0.0]))[0].double().numpy()
    cam2world, focal = label[:16].reshape(4, 4), label[16]  # intrinsics normalised by the image size
    world2cam = np.linalg.inv(cam2world)
    v = mesh.vertices @ world2cam[:3, :3].T + world2cam[:3, 3]  # OpenCV camera: x right, y down, z forward
    xy = v[:, :2] / v[:, 2:3] * focal * ZOOM * size + size / 2
    faces = mesh.faces
    tri = v[faces]  # [F, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    toward = -tri.mean(1) / np.linalg.norm(tri.mean(1), axis=1, keepdims=True)
    facing = (normal * toward).sum(1)
    colour = mesh.visual.vertex_colors[faces][..., :3].mean(1) / 255
    shade = np.clip(colour * (0.35 + 0.65 * np.abs(facing))[:, None], 0, 1)
    image = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(image)
    for i in np.argsort(-tri[:, :, 2].mean(1)):  # far to near
        if facing[i] <= 0:  # a closed mesh: faces turned away are hidden behind the front ones
            continue
        fill = tuple(int(c) for c in (shade[i] * 255).round())
        pen.polygon([tuple(p) for p in xy[faces[i]]], fill=fill)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", help="network file [default: the built-in network]")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("meshes.png"))
    args = parser.parse_args()
    G = load_network(args.network)
    with torch.no_grad():
        head, _ = G(seed_latents([0], G.cfg.z_dim), truncation_psi=0.8)
    rows = []
    for name, scene in (("network head", head), ("demo head", demo_head(seed=0))):
        mesh = scene_to_mesh(scene)
        print(f"{name}: {len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces", flush=True)
        rows.append(np.concatenate([np.asarray(draw(mesh, yaw)) for yaw in YAWS], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
