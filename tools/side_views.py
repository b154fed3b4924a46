"""Side views of networks over a magenta background, so that holes (see-through pixels) show.

    python tools/side_views.py RUN_OR_FILE [RUN_OR_FILE ...] --out side-views.png
    python tools/side_views.py a.safetensors b.safetensors --labels "random bg" "white bg" --count 4

One block per network: a row per head (seeds 0, 1, ... through ``torch.manual_seed``),
a column per yaw of the hole metric (-90, -60, +60, +90 degrees, camera level), and
under each block its hole shares from ``side_view_holes`` (64 heads unless --holes). A trained head
covers its silhouette, so magenta inside the outline is a hole.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from cgsgan.camera import orbit_labels
from cgsgan.io import load_network
from cgsgan.metrics.holes import SIDE_YAWS, side_view_holes
from cgsgan.render import render
from cgsgan.train import find_snapshot

MAGENTA = torch.tensor([1.0, 0.0, 1.0])


@torch.no_grad()
def block(G, count: int, scale: int) -> np.ndarray:
    """Heads [count] by yaws, over magenta, uint8 [count * R * scale, yaws * R * scale, 3]."""
    z = torch.randn(count, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    scenes, _ = G(z)
    yaws = torch.tensor(SIDE_YAWS, dtype=torch.float64)
    cams = orbit_labels(yaws, torch.zeros_like(yaws))
    rows = []
    for i in range(count):
        images = render(scenes[i : i + 1], cams, G.cfg.resolution, background=MAGENTA).image  # [Y, 3, R, R]
        rows.append(torch.cat(list(images), dim=-1))
    grid = (torch.cat(rows, dim=-2).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return grid.repeat(scale, 0).repeat(scale, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="+", help="network files or run folders (their newest snapshot)")
    parser.add_argument("--labels", nargs="+", help="a caption per network [default: the file names]")
    parser.add_argument("--count", type=int, default=4, help="heads per network")
    parser.add_argument("--scale", type=int, default=2, help="pixel repeat of the renders")
    parser.add_argument("--holes", type=int, default=64, help="heads the hole shares are measured on")
    parser.add_argument("--out", default="side-views.png")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.networks):
        parser.error(f"--labels gives {len(args.labels)} captions for {len(args.networks)} networks")
    if min(args.count, args.scale, args.holes) < 1:
        parser.error("--count, --scale and --holes must be at least 1")
    parts = []
    for i, name in enumerate(args.networks):
        path = find_snapshot(name).network
        G = load_network(path)
        holes = side_view_holes(G, count=args.holes)
        caption = (args.labels[i] if args.labels else path.name) + ": holes " + " / ".join(
            f"{100 * h:.2f}%" for h in holes.values())  # fmt: skip
        image = block(G, args.count, args.scale)
        canvas = Image.new("RGB", (image.shape[1], image.shape[0] + 16), "white")
        canvas.paste(Image.fromarray(image), (0, 16))
        ImageDraw.Draw(canvas).text((2, 2), caption, fill="black")
        parts.append(canvas)
        print(caption, flush=True)
    width = max(p.width for p in parts)
    out = Image.new("RGB", (width, sum(p.height + 4 for p in parts)), "white")
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + 4
    out.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
