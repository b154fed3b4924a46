"""Speed and peak memory of `cgsgan.render` on head-like scenes; prints a markdown table.

Each size runs in a fresh process, so that its peak memory is its own:

    python benchmarks/render.py                       # the four standard sizes, torch backend, CPU
    python benchmarks/render.py --sizes 109000x256 --repeats 9
    python benchmarks/render.py --device cuda --backend gsplat

Scenes: N Gaussians uniform in a ball of diameter 0.6 at the origin, log-scales uniform in
[ln(0.5 / R), ln(0.02)], random rotations, opacity logits ~ N(0, 2), colours ~ N(0, 1); one frontal
camera at radius 2.7, white background, batch 1. "forward" renders without gradients;
"forward+backward" renders with every scene field requiring grad and back-propagates
image.sum() + alpha.sum() + depth.sum(). Times are the minimum (and median) over the repeats after
one warm-up run; peak memory is the process's peak resident memory above what it held before the
first render (CPU), or the peak of torch's CUDA allocator (CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
from statistics import median

import torch
from common import PeakMemory, machine, run_child, timed

from cgsgan import GaussianScene
from cgsgan.camera import look_at
from cgsgan.render import render

SIZES = [(10_000, 64), (40_000, 128), (109_000, 256), (240_000, 512)]
# Targets on the 2-core development machines (CPU, torch backend, batch 1), in ms.
TARGETS = {(10_000, 64): (15, 40), (40_000, 128): (35, 100), (109_000, 256): (100, 300), (240_000, 512): (250, 700)}


def head_like_scene(count: int, resolution: int, seed: int = 0, device: str = "cpu") -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=-1)
    radius = 0.3 * torch.rand(count, 1, generator=g) ** (1 / 3)
    lo, hi = math.log(0.5 / resolution), math.log(0.02)
    scene = GaussianScene(
        xyz=(direction * radius)[None],
        scale=lo + (hi - lo) * torch.rand(1, count, 3, generator=g),
        rotation=torch.randn(1, count, 4, generator=g),
        opacity=2 * torch.randn(1, count, 1, generator=g),
        color=torch.randn(1, count, 3, generator=g),
    )
    return scene.to(device)


def measure(count: int, resolution: int, repeats: int, device: str, backend: str) -> dict:
    """Times (ms) and peak memory (MB) of one size; meant to run in its own process."""
    scene = head_like_scene(count, resolution, device=device)
    labels = look_at(math.pi / 2, math.pi / 2, device=device)
    trainable = scene.clone().requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            render(scene, labels, resolution, background=1.0, backend=backend)

    def forward_backward() -> None:
        out = render(trainable, labels, resolution, background=1.0, backend=backend)
        (out.image.sum() + out.alpha.sum() + out.depth.sum()).backward()

    memory = PeakMemory(device)
    fwd, fwd_bwd = timed(forward, repeats, device), timed(forward_backward, repeats, device)
    peak = memory.peak_mb()
    return dict(
        count=count, resolution=resolution,
        forward_min=min(fwd), forward_median=median(fwd),
        backward_min=min(fwd_bwd), backward_median=median(fwd_bwd),
        peak_mb=peak,
    )  # fmt: skip


def _run_child(count: int, resolution: int, args: argparse.Namespace) -> dict:
    options = ["--repeats", str(args.repeats), "--device", args.device, "--backend", args.backend]
    return run_child(__file__, ["--child", f"{count}x{resolution}", *options])


def _parse_size(text: str) -> tuple[int, int]:
    try:
        count, resolution = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 109000x256, got {text!r}") from None
    return count, resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=_parse_size, default=SIZES, help="NxR, e.g. 109000x256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "gsplat"])
    parser.add_argument("--child", type=_parse_size, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    if args.child:
        print(json.dumps(measure(*args.child, args.repeats, args.device, args.backend)))
        return

    print(f"cgsgan render benchmark: backend {args.backend}, {args.repeats} repeats, {machine(args.device)}\n")
    print("| N, R | forward ms (min / median) | forward+backward ms (min / median) | peak memory MB | targets (CPU) |")
    print("|---|---|---|---|---|")
    for count, resolution in args.sizes:
        r = _run_child(count, resolution, args)
        target = TARGETS.get((count, resolution))
        goal = f"<= {target[0]} / <= {target[1]}" if target else "-"
        print(
            f"| {count // 1000}k, {resolution} | {r['forward_min']:.0f} / {r['forward_median']:.0f} "
            f"| {r['backward_min']:.0f} / {r['backward_median']:.0f} | {r['peak_mb']:.0f} | {goal} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
