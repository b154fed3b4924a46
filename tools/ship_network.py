"""Write a training snapshot's G_ema as the package's built-in network (float16, generator only).

    python tools/ship_network.py out/evidence/network-snapshot-000010.safetensors
    python tools/ship_network.py RUN/network-snapshot-000040.safetensors --whole --out kept.safetensors

Float tensors are stored in float16 (half the size; loading casts them back to float32);
integer buffers keep their type. --whole keeps every network of the snapshot (G_ema, G
and D) with its metadata instead, so that `cgsgan train --resume kept.safetensors` goes
on with the run's own discriminator (Adam's moments are not kept: they start fresh).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cgsgan.assets import DEFAULT_NETWORK
from cgsgan.config import GeneratorConfig
from cgsgan.io.checkpoint import read_metadata, read_state_dicts, save_networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--out", type=Path, help="[default: the package's built-in network; required with --whole]")
    parser.add_argument("--whole", action="store_true", help="keep G_ema, G and D and the training metadata")
    args = parser.parse_args()
    if args.whole:
        if args.out is None:
            parser.error("--whole needs --out: a whole snapshot is not a built-in network")
        size = _half_copy(args.snapshot, args.out)
        print(f"wrote {args.out} ({size / 2**20:.1f} MB): every network in float16, metadata kept")
        return
    args.out = args.out or Path(__file__).parents[1] / "cgsgan" / "assets" / DEFAULT_NETWORK
    half = _half(read_state_dicts(args.snapshot)["G_ema"])
    cfg = GeneratorConfig.from_dict(json.loads(read_metadata(args.snapshot)["generator"]))
    source = f"{args.snapshot.name}: {read_metadata(args.snapshot).get('source', '')}; G_ema in float16"
    save_networks(args.out, {"G_ema": half}, cfg, source=source)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MB)")
    print(f"float16 vs float32, 8 frontal renders: {_render_difference(args.snapshot, args.out)}")


def _half(tensors: dict) -> dict:
    """Float tensors in float16, integer buffers as they are."""
    return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}


def _half_copy(src: Path, dst: Path) -> int:
    """Every tensor of a snapshot file in float16, its metadata unchanged, written atomically; bytes written."""
    from safetensors import safe_open
    from safetensors.torch import save

    from cgsgan.atomic import atomic_write

    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    atomic_write(dst, lambda out: out.write(save(_half(tensors), metadata=metadata)))
    return dst.stat().st_size


def _render_difference(full: Path, half: Path) -> str:
    """Mean and max |difference| of images of the same latents from both files."""
    import math

    import torch

    from cgsgan.camera import look_at
    from cgsgan.io import load_network
    from cgsgan.render import render

    images = []
    for path in (full, half):
        G = load_network(path)
        z = torch.randn(8, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            images.append(render(G(z)[0], look_at(math.pi / 2, math.pi / 2), G.cfg.resolution, 1.0).image)
    diff = (images[0] - images[1]).abs()
    return f"mean {diff.mean():.1e}, max {diff.max():.3f}"


if __name__ == "__main__":
    main()
