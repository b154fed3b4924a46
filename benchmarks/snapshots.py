"""Disk use of training snapshots per preset, measured by writing them; prints a markdown table.

    python benchmarks/snapshots.py                          # every preset (about 2 minutes on a CPU)
    python benchmarks/snapshots.py --presets tiny64 ffhqc512
    python benchmarks/snapshots.py --smoke                  # tiny64 only (the test suite runs this)

A snapshot is written by the training code itself (`save_snapshot`) after Adam's
moments exist, so the files hold what a running training writes: the network file
(G_ema, G, D) and the training state (both optimisers, counters, config). The last
columns are what a run with the preset's defaults leaves on disk (official presets:
15,000 kimg, a network file every 500 ticks of 1 kimg, as the reference; the newest 2
training states), against keeping a training state with every snapshot.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cgsgan.camera import look_at
from cgsgan.config import PRESETS
from cgsgan.train import TrainConfig, Trainer
from cgsgan.train.snapshots import save_snapshot, state_path


def tiny_dataset(root: Path, resolution: int, count: int = 4) -> Path:
    """A few noise images with valid labels: the trainer needs a dataset at the preset's resolution."""
    rng = np.random.default_rng(0)
    yaw = torch.linspace(math.pi / 2 - 0.3, math.pi / 2 + 0.3, count, dtype=torch.float64)
    labels = look_at(yaw, torch.full_like(yaw, math.pi / 2), dtype=torch.float64).tolist()
    rows = []
    for i, label in enumerate(labels):
        Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)).save(root / f"{i:05d}.png")
        rows.append([f"{i:05d}.png", label])
    (root / "dataset.json").write_text(json.dumps({"labels": rows}))
    return root


def measure(preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        tiny_dataset(data, PRESETS[preset].generator.resolution)
        trainer = Trainer(TrainConfig(preset=preset, batch=4, views=1), data)
        for opt in (trainer.opt_g, trainer.opt_d):  # Adam's moments, without changing a weight
            for group in opt.param_groups:
                for p in group["params"]:
                    p.grad = torch.zeros_like(p)
            opt.step()
        network = save_snapshot(trainer, Path(tmp) / "run")
        net_mb, state_mb = network.stat().st_size / 1e6, state_path(network).stat().st_size / 1e6
    g = sum(p.numel() for p in trainer.G.parameters()) / 1e6
    d = sum(p.numel() for p in trainer.D.parameters()) / 1e6
    cfg = TrainConfig.for_preset(preset)
    snapshots = math.floor(cfg.kimg / (cfg.tick_kimg * cfg.snapshot_ticks)) + 1  # and the last
    keep = cfg.keep
    return dict(preset=preset, g_m=g, d_m=d, network_mb=net_mb, state_mb=state_mb,
                run_gb=(snapshots * net_mb + min(keep, snapshots) * state_mb) / 1e3,
                every_gb=snapshots * (net_mb + state_mb) / 1e3, snapshots=snapshots)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--smoke", action="store_true", help="tiny64 only")
    args = parser.parse_args()
    presets = ["tiny64"] if args.smoke else args.presets
    print("| preset | G (M params) | D (M params) | network file (MB) | training state (MB) | snapshots | "
          "run folder (GB) | with every state (GB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for preset in presets:
        r = measure(preset)
        print(f"| {r['preset']} | {r['g_m']:.1f} | {r['d_m']:.1f} | {r['network_mb']:.0f} | {r['state_mb']:.0f} | "
              f"{r['snapshots']} | {r['run_gb']:.1f} | {r['every_gb']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
