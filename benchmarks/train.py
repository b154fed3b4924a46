"""Training speed (sec/kimg) and peak memory per preset; prints a markdown table.

Each preset runs in a fresh process, so that its peak memory is its own:

    python benchmarks/train.py                                  # the CPU presets, CPU
    python benchmarks/train.py --presets tiny64 --steps 8 --batch 8
    python benchmarks/train.py --device cuda --presets ffhqc256 ffhqc512
    python benchmarks/train.py --device cuda --presets ffhqc512 --precision bfloat16   # cgsgan train --precision

One iteration is the full training step of `cgsgan train`: the G phase (V views,
KNN and centre regularisers), the D phase and the EMA. Lazy R1 runs on one
step in 16, so sec/kimg = (15 plain steps + 1 R1 step) / 16 / batch * 1000,
each the median over its repeats after two warm-up steps. The data is a small
synthetic heads set at the preset's resolution (made into a temporary folder
unless --data is given). Peak memory is the process's peak resident memory
above what it held before the trainer was built (CPU), or the peak of torch's
CUDA allocator (CUDA).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

from common import PeakMemory, machine, run_child, sync

from cgsgan.config import PRESETS
from cgsgan.train import TrainConfig, Trainer


def step_seconds(trainer: Trainer, device: str, r1: bool) -> float:
    c = trainer.counters
    c.step = (c.step // 16 + 1) * 16 if r1 else c.step + (c.step % 16 == 0)  # lazy R1 runs when step % 16 == 0
    sync(device)
    start = time.perf_counter()
    trainer.step()
    sync(device)
    return time.perf_counter() - start


def measure(preset: str, batch: int, views: int, steps: int, device: str, data: str | None,
            precision: str = "float32") -> dict:  # fmt: skip
    resolution = PRESETS[preset].generator.resolution
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            from cgsgan.synthetic.dataset import synthesize_dataset

            data = str(Path(tmp) / "heads")
            synthesize_dataset(data, count=max(2 * batch, 32), resolution=resolution, seed=0, progress=False)
        memory = PeakMemory(device)
        trainer = Trainer(TrainConfig(preset=preset, batch=batch, views=views, g_precision=precision), data, device)
        for r1 in (True, False):  # warm-up
            step_seconds(trainer, device, r1)
        plain = median(step_seconds(trainer, device, False) for _ in range(steps))
        with_r1 = median(step_seconds(trainer, device, True) for _ in range(max(steps // 4, 1)))
    per_step = (15 * plain + with_r1) / 16
    return dict(
        preset=preset,
        batch=batch,
        views=views,
        precision=precision,
        step_s=plain,
        r1_step_s=with_r1,
        sec_per_kimg=per_step / batch * 1000,
        peak_mb=memory.peak_mb(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=None, choices=list(PRESETS),
                        help="default: the CPU presets on CPU, every preset up to 512 on CUDA")  # fmt: skip
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="timed plain steps per preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="the generator's arithmetic (cgsgan train --precision)")  # fmt: skip
    parser.add_argument("--data", help="dataset folder or zip (one resolution: use with a single preset)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.batch < 4 or args.batch % 4:
        parser.error("--steps must be >= 1 and --batch a multiple of 4")
    options = [f"--batch={args.batch}", f"--views={args.views}", f"--steps={args.steps}", f"--device={args.device}",
               f"--precision={args.precision}"]  # fmt: skip
    if args.data:
        options.append(f"--data={args.data}")

    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.views, args.steps, args.device, args.data,
                                 args.precision)))  # fmt: skip
        return

    cuda = args.device.startswith("cuda")
    presets = args.presets or ([p for p in PRESETS if p not in ("ffhqc1024", "ffhqc2048")] if cuda else
                               [p for p, v in PRESETS.items() if "cpu" in v.tags])  # fmt: skip
    print(f"cgsgan training benchmark: batch {args.batch}, {args.views} views, generator in {args.precision}, "
          f"{machine(args.device)}\n")  # fmt: skip
    print("| preset | batch | views | step s (plain / R1) | sec/kimg | peak memory MB |")
    print("|---|---|---|---|---|---|")
    for preset in presets:
        r = run_child(__file__, [f"--child={preset}", *options])
        print(
            f"| {preset} | {r['batch']} | {r['views']} | {r['step_s']:.3f} / {r['r1_step_s']:.3f} "
            f"| {r['sec_per_kimg']:.1f} | {r['peak_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
