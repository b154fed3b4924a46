"""Synthesis speed as the paper measures it: a random latent to a rendered image (mapping, synthesis, render).

Prints markdown tables: frames per second end to end, the time split by stage
and peak memory, per preset, batch and precision. Each (preset, batch,
precision) runs in a fresh process, so that its peak memory is its own:

    python benchmarks/synthesis.py                                # tiny64 ... ffhqc512, batch 1 and 8, CPU
    python benchmarks/synthesis.py --presets ffhqc512 --batches 1 --precisions float32 bfloat16
    python benchmarks/synthesis.py --device cuda --batches 1 8 32 --precisions float32 float16
    python benchmarks/synthesis.py --smoke                        # tiny64, batch 1, one repeat (the test suite)

The networks of the official presets have fresh weights (layer scales made
non-zero so every block computes; tiny64 uses the built-in trained network),
so their scenes are not trained heads: render times are indicative, and the
mapping and synthesis times are exact for the architecture. One frontal
camera per image at the preset's resolution, white background, backend
"auto" (gsplat on CUDA when installed, else the torch renderer).

``--compile`` adds a row per case with the generator's synthesis compiled
(``cgsgan.models.synthesizer.Synthesizer``, the apps' ``--compile``: static
shapes, captured as a CUDA graph on CUDA); its image error
is against the eager float32 images. Reduced precision runs mapping and synthesis under ``torch.autocast`` with
that dtype (the renderer always works in float32); "image error" is the
largest and the mean absolute difference of its images from the float32 ones
(values in [0, 1]), and their PSNR.

Times: the minimum (and median) over the repeats after one warm-up call. FPS
is batch / end-to-end time. Stages are timed separately (mapping; synthesis
from ws; render from the scene), so they add up to about the end-to-end time.
Peak memory: resident memory above what the process held with the network
built (CPU), or the peak of torch's CUDA allocator (CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
from statistics import median

import torch
from common import PeakMemory, machine, run_child, sync, timed

from cgsgan.camera import look_at
from cgsgan.config import PRESETS, generator_config
from cgsgan.io import load_network
from cgsgan.models import build_generator
from cgsgan.models.synthesizer import PRECISIONS, Synthesizer, precision_context
from cgsgan.render import render

PAPER_FPS = {"ffhqc512": 152.5}  # Table 2: z -> image at 512^2, batch 1, one RTX 4090 (GGHead: 167.7)


def network(preset: str, device: str):
    """The built-in trained network for tiny64, else fresh weights whose layer scales compute."""
    if preset == "tiny64":
        return load_network(device=device)
    G = build_generator(generator_config(preset)).to(device).eval().requires_grad_(False)
    for name, p in G.named_parameters():
        if ".ls_" in name:  # fresh layer scales are zero: make every block compute something
            p.normal_(0, 0.1)
    return G


def measure(preset: str, batch: int, precision: str, repeats: int, device: str, compile: bool = False) -> dict:
    G = network(preset, device)
    synthesize = Synthesizer(G, precision, compile)  # the apps' path: compiled on request, CUDA graphs on CUDA
    resolution = G.cfg.resolution
    z = torch.randn(batch, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    labels = look_at(math.pi / 2, math.pi / 2, device=device).expand(batch, -1)
    dtype = PRECISIONS[precision]

    def reduced():
        return precision_context(torch.device(device), precision)

    def mapping():
        with reduced():
            return G.mapping(z, truncation_psi=0.8)

    def synthesis(ws):
        return synthesize(ws)

    def draw(scene):
        return render(scene, labels, resolution, background=1.0).image

    def end_to_end():
        return draw(synthesis(mapping()))

    memory = PeakMemory(device)
    with torch.inference_mode():
        ws = mapping()
        scene = synthesis(ws)
        stages = {
            "mapping": min(timed(mapping, repeats, device)),
            "synthesis": min(timed(lambda: synthesis(ws), repeats, device)),
            "render": min(timed(lambda: draw(scene), repeats, device)),
        }
        total = timed(end_to_end, repeats, device)
        image = end_to_end()
        error = None
        if dtype != torch.float32 or compile:
            exact = draw(G.synthesis(G.mapping(z, truncation_psi=0.8))[0])
            diff = (image - exact).abs()
            mse = diff.square().mean().item()
            error = dict(max=diff.max().item(), mean=diff.mean().item(),
                         psnr=10 * math.log10(1 / mse) if mse > 0 else math.inf)  # fmt: skip
    sync(device)
    label = precision + (" compiled" if compile else "")
    return dict(preset=preset, batch=batch, precision=label, gaussians=G.cfg.num_gaussians,
                resolution=resolution, ms_min=min(total), ms_median=median(total), stages=stages,
                peak_mb=memory.peak_mb(), error=error)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny64", "small128", "ffhqc256", "ffhqc512"],
                        choices=list(PRESETS))  # fmt: skip
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time each case with the generator compiled (torch.compile, the apps' --compile)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny64, batch 1, one repeat (for the test suite)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.presets, args.batches, args.repeats = ["tiny64"], [1], 1
    if args.repeats < 1 or min(args.batches) < 1:
        parser.error("--repeats and --batches must be >= 1")

    if args.child:
        preset, batch, precision, compiled = args.child
        print(json.dumps(measure(preset, int(batch), precision, args.repeats, args.device, compiled == "1")))
        return

    print(f"cgsgan synthesis benchmark (z -> image): {args.repeats} repeats, {machine(args.device)}\n")
    print(
        "| preset | Gaussians | batch | precision | FPS | ms per image (min / median) "
        "| mapping / synthesis / render ms per batch | peak MB "
        "| image error vs float32 (max / mean, PSNR) | paper FPS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for batch in args.batches:
            for precision, compiled in [(p, c) for p in args.precisions for c in ("0", "1")[: 1 + args.compile]]:
                options = ["--repeats", str(args.repeats), "--device", args.device]
                r = run_child(__file__, ["--child", preset, str(batch), precision, compiled, *options])
                s = r["stages"]
                e = r["error"]
                error = "-" if e is None else f"{e['max']:.3f} / {e['mean']:.4f}, {e['psnr']:.1f} dB"
                paper = PAPER_FPS.get(preset) if batch == 1 else None
                print(
                    f"| {preset} | {r['gaussians']:,} | {batch} | {r['precision']} | {batch * 1e3 / r['ms_min']:.2f} "
                    f"| {r['ms_min'] / batch:.0f} / {r['ms_median'] / batch:.0f} "
                    f"| {s['mapping']:.0f} / {s['synthesis']:.0f} / {s['render']:.0f} | {r['peak_mb']:.0f} "
                    f"| {error} | {paper if paper else '-'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
