"""File sizes and round-trip error of every 3DGS export format, on one head of the built-in network.

    python benchmarks/formats.py             # prints the README's two tables (a few seconds)
    python benchmarks/formats.py --smoke     # the first 512 Gaussians only (the test suite runs this)

The head is the one the format docs and tests use: ``load_network()``,
``torch.manual_seed(0)``, z = randn, truncation 0.8. Each lossy format is written,
read back and compared with the scene it was given, field by field in activated
units (each Gaussian's worst component, max / mean over Gaussians). The compressed PLY stores
Gaussians in Morton order, so it is compared with the head in that order. .spz keeps
colours only up to rgb 1.44 and log-scales in [-10, 5.94]: brighter channels come
back clipped and thinner axes (flat Gaussians, below e^-10 = 4.5e-5 units) come back
at that floor; both are counted apart and left out of the rgb and scale errors.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from cgsgan.gaussians import SH_C0, GaussianScene
from cgsgan.io import (
    load_network,
    read_compressed_ply,
    read_spz,
    write_compressed_ply,
    write_ply,
    write_splat,
    write_spz,
)
from cgsgan.io.compressed_ply import morton_order

SPZ_RGB_TOP = 0.5 + SH_C0 * 127.5 / (0.15 * 255)  # the largest colour an .spz byte holds
SPZ_LOG_SCALE_RANGE = (-10.0, 255 / 16 - 10)  # the log-scales an .spz byte holds; others are clamped


def built_in_head(count: int | None = None) -> GaussianScene:
    G = load_network()
    torch.manual_seed(0)
    with torch.no_grad():
        scene, _ = G(torch.randn(1, G.cfg.z_dim), truncation_psi=0.8)
    return scene if count is None else scene.subset(slice(0, count))


def sizes(scene: GaussianScene, folder: Path) -> list[tuple[str, int]]:
    """Bytes of each format for ``scene``."""
    writers = {
        "`.ply` (standard 3DGS, 62 float properties)": lambda p: write_ply(p / "h.ply", scene),
        "`.ply --compact` (14 properties)": lambda p: write_ply(p / "c.ply", scene, compact=True),
        "`.splat` (32 bytes a Gaussian)": lambda p: write_splat(p / "h.splat", scene),
        "`.spz` version 2": lambda p: write_spz(p / "v2.spz", scene, version=2),
        "`.spz` version 3": lambda p: write_spz(p / "v3.spz", scene, version=3),
        "`.compressed.ply`": lambda p: write_compressed_ply(p / "h.compressed.ply", scene),
    }
    return [(name, write(folder).stat().st_size) for name, write in writers.items()]


def rotation_degrees(a: Tensor, b: Tensor) -> Tensor:
    """Angles [N] between quaternions [N, 4] of any norm (q and -q are one rotation)."""
    a, b = (torch.nn.functional.normalize(q.double(), dim=-1) for q in (a, b))
    return torch.rad2deg(2 * torch.acos((a * b).sum(-1).abs().clamp(max=1.0)))


def errors(a: GaussianScene, b: GaussianScene, spz: bool = False) -> dict[str, tuple[float, float]]:
    """Each Gaussian's worst component, then (max, mean) over Gaussians, per field; for ``spz``, colour
    channels above what its byte holds are left out of rgb, and scale axes outside its range out of scale."""

    def both(t: Tensor) -> tuple[float, float]:  # t [1, N, C] or [N]
        worst = t.reshape(-1, t.shape[-1]).amax(-1) if t.dim() == 3 else t
        return float(worst.max()), float(worst.double().mean())

    rgb_a, rgb_b = a.rgb().clamp_min(0), b.rgb().clamp_min(0)  # as rendered
    kept = (a.rgb() <= SPZ_RGB_TOP).float() if spz else torch.ones_like(rgb_a)
    lo, hi = SPZ_LOG_SCALE_RANGE
    storable = ((a.scale >= lo) & (a.scale <= hi)).float() if spz else torch.ones_like(a.scale)
    return {
        "position (scene units)": both((a.xyz - b.xyz).abs()),
        "scale (relative)": both((b.scales() / a.scales() - 1).abs() * storable),
        "opacity": both((a.opacities() - b.opacities()).abs()),
        "rgb (clamped at 0)": both((rgb_a - rgb_b).abs() * kept),
        "rotation (degrees)": both(rotation_degrees(a.rotation[0], b.rotation[0])),
    }


def round_trips(scene: GaussianScene, folder: Path) -> dict[str, dict[str, tuple[float, float]]]:
    ordered = scene.subset(torch.from_numpy(morton_order(scene.xyz[0].numpy())))
    return {
        ".spz v2": errors(scene, read_spz(write_spz(folder / "v2.spz", scene, version=2)), spz=True),
        ".spz v3": errors(scene, read_spz(write_spz(folder / "v3.spz", scene, version=3)), spz=True),
        ".compressed.ply": errors(ordered, read_compressed_ply(write_compressed_ply(folder / "h.cply", scene))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the first 512 Gaussians only")
    args = parser.parse_args()
    scene = built_in_head(512 if args.smoke else None)
    extent = float((scene.xyz.amax(1) - scene.xyz.amin(1)).max())
    clipped = int((scene.rgb() > SPZ_RGB_TOP).any(-1).sum())
    lo, hi = SPZ_LOG_SCALE_RANGE
    clamped = int(((scene.scale < lo) | (scene.scale > hi)).any(-1).sum())
    print(f"one head of the built-in network: {scene.num_gaussians:,} Gaussians, extent {extent:.3f}, "
          f"{clipped} with a channel above rgb {SPZ_RGB_TOP:.2f} (up to {float(scene.rgb().max()):.2f}), "
          f"{clamped} with a log-scale outside .spz's [{lo:g}, {hi:g}] "
          f"({float(scene.scale.min()):.2f} to {float(scene.scale.max()):.2f})\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        print("| file | bytes |\n|---|---|")
        for name, size in sizes(scene, Path(tmp)):
            print(f"| {name} | {size:,} |")
        table = round_trips(scene, Path(tmp))
    print("\nmax / mean\n\n| field | " + " | ".join(table) + " |\n|---|" + "---|" * len(table))
    for field in next(iter(table.values())):
        cells = [f"{table[f][field][0]:.3g} / {table[f][field][1]:.2g}" for f in table]
        print(f"| {field} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
