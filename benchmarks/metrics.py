"""Throughput of the metrics' two halves: fake generation (z -> rendered uint8 image) and Inception features.

    python benchmarks/metrics.py                      # CPU presets on the CPU
    python benchmarks/metrics.py --device cuda        # every preset
    python benchmarks/metrics.py --smoke              # one tiny pass of each, as the test suite runs it

Fakes are drawn and rendered exactly as the metrics do (random generator weights
with non-zero layer scales, cameras around the frontal view, white background);
features are the standard Inception's on those images. Images/s are over the
repeats after one warm-up batch; the last column is what fid50k_full would take
for its 50,000 fakes (the reals' features are cached after their first run).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from common import machine, sync

from cgsgan.camera import look_at
from cgsgan.config import PRESETS, generator_config
from cgsgan.metrics import load_inception
from cgsgan.metrics.fakes import fake_images
from cgsgan.models import build_generator

CPU_PRESETS = [name for name, p in PRESETS.items() if "cpu" in p.tags]


def rate(fn, batch: int, repeats: int, device: str) -> float:
    """Images per second of fn() producing ``batch`` images, after a warm-up call."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return batch * repeats / (time.perf_counter() - start)


def measure(preset: str, batch: int, repeats: int, device: str, extractor) -> dict:
    G = build_generator(generator_config(preset)).to(device).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".ls_" in name:  # fresh layer scales are zero: make every block compute something
                p.normal_(0, 0.1)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, G.cfg.z_dim, generator=gen).to(device)
    yaw = math.pi / 2 + 0.6 * (torch.rand(batch, generator=gen) - 0.5)
    labels = look_at(yaw, torch.full_like(yaw, math.pi / 2)).to(device)
    with torch.inference_mode():
        images = fake_images(G, z, labels, labels)
        generate = rate(lambda: fake_images(G, z, labels, labels), batch, repeats, device)
        features = rate(lambda: extractor(images), batch, repeats, device)
    total = 1 / (1 / generate + 1 / features)
    return dict(preset=preset, resolution=G.cfg.resolution, generate=generate, features=features, total=total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=None,
                        help="[default: the CPU presets on a CPU, every preset on CUDA]")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, help="images per call [default: 16 on CPU, 64 on CUDA]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inception", default=None, help="feature network file [default: the installed one]")
    parser.add_argument("--smoke", action="store_true", help="tiny64 only, 2 images, 1 repeat")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    presets = args.presets or (list(PRESETS) if cuda else CPU_PRESETS)
    batch = args.batch or (64 if cuda else 16)
    if args.smoke:
        presets, batch, args.repeats = ["tiny64"], 2, 1
    if batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be >= 1")
    extractor = load_inception(args.inception, args.device)

    print(f"cgsgan metrics benchmark: batch {batch}, {args.repeats} repeats, {machine(args.device)}\n")
    print("| preset | resolution | fakes img/s (z -> image) | Inception img/s | together img/s | 50k fakes, min |")
    print("|---|---|---|---|---|---|")
    for preset in presets:
        r = measure(preset, batch, args.repeats, args.device, extractor)
        print(f"| {preset} | {r['resolution']} | {r['generate']:.1f} | {r['features']:.1f} | {r['total']:.1f} "
              f"| {50000 / r['total'] / 60:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
