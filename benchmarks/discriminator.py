"""Discriminator speed: forward+backward, and a lazy-R1 pass (gradient w.r.t. the image, then backward).

    python benchmarks/discriminator.py                         # the CPU presets, CPU
    python benchmarks/discriminator.py --device cuda --presets ffhqc256 ffhqc512

Batch 8, fp16 blocks on CUDA as the reference; times are the median of --repeats
calls after one warm-up. The R1 pass differentiates through the FIR down-sampling
twice, which is what `cgsgan.nn.resample.filter2d`'s own backward keeps fast.
"""

from __future__ import annotations

import argparse
from statistics import median

import torch
from common import machine, timed

from cgsgan.config import PRESETS
from cgsgan.models.discriminator import Discriminator
from cgsgan.train.loss import r1_loss


def measure(preset: str, batch: int, repeats: int, device: str) -> tuple[float, float]:
    """Median ms of D forward+backward and of one R1 pass."""
    cfg = PRESETS[preset].discriminator_config()
    D = Discriminator(cfg).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, cfg.resolution, cfg.resolution, generator=gen).to(device)
    c = torch.randn(batch, 25, generator=gen).to(device)

    def plain() -> None:
        D(x, c).sum().backward()

    def r1() -> None:
        image = x.detach().requires_grad_(True)
        r1_loss(D(image, c), image, 1.0, 16).backward()

    return median(timed(plain, repeats, device)), median(timed(r1, repeats, device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny64", "small128"], choices=list(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"cgsgan discriminator benchmark: batch {args.batch}, {machine(args.device)}\n")
    print("| preset | D forward+backward ms | R1 pass ms |\n|---|---|---|")
    for preset in args.presets:
        plain_ms, r1_ms = measure(preset, args.batch, args.repeats, args.device)
        print(f"| {preset} | {plain_ms:.1f} | {r1_ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
