"""The README's pictures of a network: a grid of seeds 0-5 at 96 px and a strip of turntable frames.

    python docs/generate/figures.py                         # the built-in network -> docs/generate
    python docs/generate/figures.py --network RUN --out OUT

grid.png is `cgsgan generate --seeds 0-5 --resolution 96 --formats grid` (truncation
0.8); turntable-strip.png puts every 6th of the 48 turntable frames of seeds 0-2 side
by side (0, 45, 90, ... 315 degrees from the front).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from cgsgan.apps.generate import generate_files

SIZE, STRIP_HEADS, STRIP_EVERY = 96, 3, 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", help="network file or run folder [default: the built-in network]")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_files(args.network, "0-5", tmp, formats="grid,turntable", resolution=SIZE)
        (args.out / "grid.png").write_bytes(paths["grid"][0].read_bytes())
        frames = iio.imread(paths["turntable"][0], index=None)  # [frames, H, 6 * SIZE, C]
    strip = np.concatenate([f[:, : STRIP_HEADS * SIZE, :3] for f in frames[::STRIP_EVERY]], axis=1)
    iio.imwrite(args.out / "turntable-strip.png", strip)
    print(f"wrote {args.out / 'grid.png'} and {args.out / 'turntable-strip.png'} {strip.shape[1]}x{strip.shape[0]}")


if __name__ == "__main__":
    main()
