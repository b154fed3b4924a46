"""Time per sample and peak memory of the generator (mapping + synthesis, no rendering); prints a markdown table.

Each (preset, batch) runs in a fresh process, so that its peak memory is its own:

    python benchmarks/generator.py                          # every preset at batch 1 and 8, CPU
    python benchmarks/generator.py --presets ffhqc512 --batches 1 --repeats 9
    python benchmarks/generator.py --device cuda
    python benchmarks/generator.py --presets ffhqc512 --breakdown   # where the time goes

The network has fresh (random) weights with non-zero layer scales, so every
branch computes; inference mode, float32. Times are per sample: the minimum
(and median) over the repeats after one warm-up call, divided by the batch.
Peak memory is the process's peak resident memory above what it held with the
network built (CPU), or the peak of torch's CUDA allocator (CUDA).
"""

from __future__ import annotations

import argparse
import json
from statistics import median

import torch
from common import PeakMemory, machine, run_child, timed

from cgsgan.config import PRESETS, generator_config
from cgsgan.models import build_generator

TARGETS = {("ffhqc512", 1): 320}  # ms per sample on the 2-core development machines (CPU)


def measure(preset: str, batch: int, repeats: int, device: str) -> dict:
    G = build_generator(generator_config(preset)).to(device).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".ls_" in name:  # fresh layer scales are zero: make every block compute something
                p.normal_(0, 0.1)
    z = torch.randn(batch, G.cfg.z_dim, device=device)

    def sample() -> None:
        with torch.inference_mode():
            G(z)

    memory = PeakMemory(device)
    times = timed(sample, repeats, device)
    return dict(
        preset=preset,
        batch=batch,
        gaussians=G.cfg.num_gaussians,
        ms_min=min(times) / batch,
        ms_median=median(times) / batch,
        peak_mb=memory.peak_mb(),
    )


def breakdown(preset: str, repeats: int, device: str) -> dict:
    """Milliseconds of each stage of one batch-1 sample: mapping, encoding + transformer, upsamplers, the rest."""
    G = build_generator(generator_config(preset)).to(device).eval()
    pg = G.point_gen
    z = torch.randn(1, G.cfg.z_dim, device=device)
    with torch.inference_mode():
        ws = G.mapping(z)
        points = torch.tanh(G._xyz)[None]
        tokens = pg.transformer(pg.conv_in(points), ws)
        stages = {
            "mapping": lambda: G.mapping(z),
            "transformer": lambda: pg.transformer(pg.conv_in(points), ws),
            "upsamplers": lambda: [up(tokens[i]) for i, up in enumerate(pg.upsample_layers)],
            "total": lambda: G(z),
        }
        times = {name: min(timed(fn, repeats, device)) for name, fn in stages.items()}
    times["heads + parent/child rules"] = times["total"] - sum(v for k, v in times.items() if k != "total")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--breakdown", action="store_true", help="time the stages of each preset at batch 1")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or min(args.batches) < 1:
        parser.error("--repeats and --batches must be >= 1")

    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.repeats, args.device)))
        return

    print(f"cgsgan generator benchmark: {args.repeats} repeats, {machine(args.device)}\n")
    if args.breakdown:
        for preset in args.presets:
            parts = ", ".join(f"{k} {v:.0f} ms" for k, v in breakdown(preset, args.repeats, args.device).items())
            print(f"{preset}, batch 1: {parts}")
        return
    print("| preset | Gaussians | batch | ms per sample (min / median) | peak memory MB | target |")
    print("|---|---|---|---|---|---|")
    for preset in args.presets:
        for batch in args.batches:
            options = ["--repeats", str(args.repeats), "--device", args.device]
            r = run_child(__file__, ["--child", preset, str(batch), *options])
            target = TARGETS.get((preset, batch))
            print(
                f"| {preset} | {r['gaussians']:,} | {batch} | {r['ms_min']:.0f} / {r['ms_median']:.0f} "
                f"| {r['peak_mb']:.0f} | {f'<= {target}' if target else '-'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
