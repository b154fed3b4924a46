"""A network rendered on a training run's fixed image grid: the latents and cameras of its fakes-*.png.

    python tools/run_grid.py NETWORK OUT.png                      # a run on the built-in synthetic heads, seed 0
    python tools/run_grid.py NETWORK OUT.png --data /data/heads64 --seed 3 --reals reals.png

A run draws its grid from its seed and its dataset, so a
network file whose run folder is gone can still be shown as that run showed it:
the grid is the same for every run with these settings, and --reals writes the
real images that go with it (the run's reals.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cgsgan.data import HeadsDataset
from cgsgan.data.cache import default_dataset
from cgsgan.io import load_network
from cgsgan.render import render
from cgsgan.train.progress import grid_inputs, write_grid


@torch.no_grad()
def run_grid(network: str | Path | None, data: str | Path | None = None, seed: int = 0):
    """(fakes, reals) [N, 3, R, R] in [0, 1]: G_ema of ``network`` on the grid of a run with this data and seed."""
    G = load_network(network)
    path = data if data is not None else default_dataset(G.cfg.resolution, progress=False)
    dataset = HeadsDataset(path, resolution=G.cfg.resolution, seed=seed)
    z, labels, reals = grid_inputs(dataset, G.cfg.z_dim, seed)
    scene, _ = G(z)
    return render(scene, labels, G.cfg.resolution, background=1.0).image, reals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", help="network file [the built-in network: builtin]")
    parser.add_argument("out", type=Path, help="PNG of the fakes")
    parser.add_argument("--data", help="the run's dataset [default: the built-in synthetic heads]")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    parser.add_argument("--reals", type=Path, help="also write the grid's real images here")
    args = parser.parse_args()
    fakes, reals = run_grid(None if args.network == "builtin" else args.network, args.data, args.seed)
    write_grid(args.out, fakes)
    if args.reals:
        write_grid(args.reals, reals)
    print(f"wrote {args.out}" + (f" and {args.reals}" if args.reals else ""))


if __name__ == "__main__":
    main()
