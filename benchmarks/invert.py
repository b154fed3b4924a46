"""Inversion quality and time: a head from a known latent, rendered at yaw 20, inverted from that one view.

    python benchmarks/invert.py                          # built-in network, CPU, three recipes
    python benchmarks/invert.py --device cuda --preset ffhqc512     # timing on a GPU (random weights)
    python benchmarks/invert.py --smoke                  # a few steps, as the test suite runs it

PSNR (dB, white background) of the inverted head against the known head at the
input view and at views 30 and 60 degrees of yaw to either side of it, which
measures how 3D the inversion is, not only how well it copies the photo. With
``--preset`` the generator has random weights (non-zero layer scales), which
makes the timing real and the PSNR meaningless.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, sync

from cgsgan.camera import orbit_labels
from cgsgan.config import generator_config
from cgsgan.invert import InversionConfig, View, invert, load_perceptual, psnr
from cgsgan.io import load_network
from cgsgan.models import build_generator
from cgsgan.render import render

INPUT_YAW, PITCH = 20.0, 5.0
OFFSETS = (0.0, -30.0, 30.0, -60.0, 60.0)


def cameras(yaws, device) -> torch.Tensor:
    yaw = torch.tensor(yaws, dtype=torch.float64)
    return orbit_labels(yaw, torch.full_like(yaw, PITCH)).to(device)


def known_head(G, seed: int, device):
    """The head of a seed and its view at the input camera (colours not premultiplied, alpha as the mask)."""
    z = torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        scene = G(z)[0]
        out = render(scene, cameras([INPUT_YAW], device), G.cfg.resolution, background=0.0)
    colours = torch.where(out.alpha > 1e-4, out.image / out.alpha.clamp_min(1e-4), 1.0).clamp(0, 1)
    return scene, View(colours[0], out.alpha[0], cameras([INPUT_YAW], device)[0], f"seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="Random-weight generator of this preset [default: built-in].")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tune-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--smoke", action="store_true", help="Three steps of each stage.")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.tune_steps = 3, 2
    if args.preset:
        G = build_generator(generator_config(args.preset)).to(args.device)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if ".ls_" in name:  # fresh layer scales are zero: make every block compute something
                    p.normal_(0, 0.1)
    else:
        G = load_network(device=args.device)
    scene, view = known_head(G, args.seed, args.device)
    recipes = [
        ("pixel MSE", args.tune_steps * 0, 0.0),
        ("pixel MSE", args.tune_steps, 0.0),
        ("MSE + Inception perceptual (the default losses)", args.tune_steps, 1.0),
    ]
    print(f"{machine(args.device)}; {args.preset or 'built-in network'}, {G.cfg.resolution}^2")
    print("| losses | steps (latent + tuning) | input view | -30 / +30 deg | -60 / +60 deg | seconds |")
    print("|---|---|---|---|---|---|")
    yaws = [INPUT_YAW + o for o in OFFSETS]
    with torch.no_grad():
        truth = render(scene, cameras(yaws, args.device), G.cfg.resolution, background=1.0).image
    for name, tune_steps, weight in recipes:
        cfg = InversionConfig(steps=args.steps, lr=args.lr, tune_steps=tune_steps, perceptual_weight=weight)
        distance = load_perceptual("inception" if weight else "none", device=args.device)
        sync(args.device)
        start = time.perf_counter()
        result = invert(G, [view], cfg, distance, progress=False)
        sync(args.device)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            mine = render(result.scene(), cameras(yaws, args.device), G.cfg.resolution, background=1.0).image
        p = [psnr(mine[i].cpu(), truth[i].cpu()) for i in range(len(yaws))]
        print(f"| {name} | {args.steps} + {tune_steps} | {p[0]:.1f} | {p[1]:.1f} / {p[2]:.1f} | "
              f"{p[3]:.1f} / {p[4]:.1f} | {seconds:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
