"""Train a fresh discriminator against a frozen generator and report whether it learns to tell them apart.

    python tools/fresh_discriminator.py cgsgan/assets/tiny64-synthetic-heads.safetensors --kimg 4.6
    python tools/fresh_discriminator.py NETWORK --kimg 2.4 --jitter 0.05 --save warmed.safetensors

G, its w_avg and G_ema stay fixed; D trains as in `cgsgan train` (losses, lazy R1, Adam, the
network's preset, the built-in heads unless --data). Every --window steps a line gives the
window's mean D loss and logits. A discriminator that cannot tell reals from fakes sits at
2 ln 2 = 1.386 with both logits near 0.

--jitter S adds noise of standard deviation S to the fakes' Gaussian positions, fading
linearly to 0 over the run: jittered heads are easy to tell apart, so this tests whether
what D learns on them carries over to the generator's own heads. --save writes G_ema, G and
the trained D to one file, which `cgsgan train --resume FILE --resume-kimg K` starts from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from cgsgan.io.checkpoint import save_networks
from cgsgan.train import TrainConfig, Trainer, find_snapshot, training_data
from cgsgan.train.runs import imported_preset
from cgsgan.train.snapshots import restore
from cgsgan.train.trainer import reference_numerics


class JitteredTrainer(Trainer):
    """A trainer whose fakes have their Gaussians' positions jittered by ``jitter`` (set between steps)."""

    jitter = 0.0

    def _render(self, scene, labels, background):
        if self.jitter > 0:
            noise = torch.randn(scene.xyz.shape, generator=torch.Generator().manual_seed(self.counters.step))
            scene = dataclasses.replace(scene, xyz=scene.xyz + self.jitter * noise.to(scene.xyz))
        return super()._render(scene, labels, background)


def warm_up(network: Path, kimg: float, data: str | None = None, resume_kimg: float | None = None,
            jitter: float = 0.0, window: int = 25, log=print) -> tuple[Trainer, list[dict]]:  # fmt: skip
    """D-only steps for ``kimg`` against the frozen generator in ``network``; the trainer and one record per window."""
    preset, revision = imported_preset(network, None)
    cfg = TrainConfig.for_preset(preset, revision=revision, data=data).fine_tuning()
    trainer = JitteredTrainer(cfg, training_data(cfg))
    restore(trainer, find_snapshot(network), resume_kimg, log=log)
    steps = max(1, math.ceil(kimg * 1000 / cfg.batch))
    records, window_stats, start = [], [], time.perf_counter()
    with reference_numerics(cfg):
        for i in range(steps):
            trainer.jitter = jitter * (1 - i / steps)
            window_stats.append(trainer.step(train_g=False))
            if len(window_stats) == window or i == steps - 1:
                means = {k: sum(s[k] for s in window_stats) / len(window_stats) for k in ("D_loss", "D_real", "D_fake")}
                record = {"step": i + 1, "kimg": (i + 1) * cfg.batch / 1000, "jitter": trainer.jitter, **means}
                records.append(record)
                log(f"kimg {record['kimg']:6.3f}  jitter {trainer.jitter:.4f}  D_loss {means['D_loss']:.4f}  "
                    f"D_real {means['D_real']:+.4f}  D_fake {means['D_fake']:+.4f}  "
                    f"{time.perf_counter() - start:6.0f} s")  # fmt: skip
                window_stats = []
    return trainer, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", type=Path, help="a network file holding G or G_ema")
    parser.add_argument("--kimg", type=float, default=2.0, help="real images D sees, in thousands")
    parser.add_argument("--data", help="dataset folder [default: the built-in heads]")
    parser.add_argument("--resume-kimg", type=float, help="kimg the network was trained for [default: its metadata]")
    parser.add_argument("--jitter", type=float, default=0.0, help="initial jitter of the fakes' positions")
    parser.add_argument("--window", type=int, default=25, help="steps per reported line")
    parser.add_argument("--records", type=Path, help="also write the lines as JSON lines to this file")
    parser.add_argument("--save", type=Path, help="write G_ema, G and the trained D to this network file")
    args = parser.parse_args()
    if args.kimg <= 0 or args.window < 1 or args.jitter < 0:
        parser.error("--kimg must be > 0, --window >= 1 and --jitter >= 0")
    trainer, records = warm_up(args.network, args.kimg, args.data, args.resume_kimg, args.jitter, args.window)
    if args.records:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records))
    if args.save:
        save_networks(args.save, {"G_ema": trainer.G_ema, "G": trainer.G, "D": trainer.D}, trainer.g_cfg,
                      source=f"{args.network.name} with a discriminator trained alone for {args.kimg:g} kimg",
                      discriminator=trainer.d_cfg)  # fmt: skip
        print(f"wrote {args.save} (G unchanged: resume it with the network's own --resume-kimg)")


if __name__ == "__main__":
    main()
