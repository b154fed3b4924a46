"""Speed of photo preparation (cgsgan dataset prepare): photos per second, end to end.

    python benchmarks/prepare.py                    # 512^2 crops from 1-megapixel and 12-megapixel photos
    python benchmarks/prepare.py --smoke            # two photos, as the test suite runs it

The photos are the one face photo that ships offline (scikit-image's astronaut,
public domain) placed at random positions and sizes on larger canvases and
mirrored at random, so each photo has one face at a different place, scale and
side. Every case starts from an empty output folder; the time includes starting
the worker processes and loading the networks in each, decoding, detection,
fitting, cropping, matting and writing PNGs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cgsgan.prepare import prepare_dataset


def make_photos(folder: Path, count: int, side: int, seed: int) -> None:
    from skimage.data import astronaut

    face = Image.fromarray(astronaut())
    rng = np.random.default_rng(seed)
    for i in range(count):
        canvas = Image.new("RGB", (side * 4 // 3, side), tuple(int(v) for v in rng.integers(0, 255, 3)))
        size = int(side * rng.uniform(0.5, 0.9))
        photo = face.resize((size, size), Image.LANCZOS)
        if rng.random() < 0.5:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
        x, y = (int(rng.integers(0, canvas.width - size)), int(rng.integers(0, canvas.height - size)))
        canvas.paste(photo, (x, y))
        canvas.save(folder / f"photo{i:03d}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=16, help="Photos per case.")
    parser.add_argument("--sides", type=int, nargs="+", default=[864, 3000], help="Photo heights (width 4:3).")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="Two small photos, one in-process case.")
    args = parser.parse_args()
    if args.smoke:
        args.photos, args.sides, args.workers, args.resolution = 2, [400], [0], 64

    print("| photo | crops | workers | photos | accepted | seconds | photos/s |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            photos = Path(tmp) / f"photos{side}"
            photos.mkdir()
            make_photos(photos, args.photos, side, seed=side)
            for workers in args.workers:
                start = time.perf_counter()
                result = prepare_dataset(photos, Path(tmp) / f"out{side}-{workers}", resolutions=(args.resolution,),
                                         workers=workers, progress=False)  # fmt: skip
                seconds = time.perf_counter() - start
                print(f"| {side * 4 // 3}x{side} | {args.resolution}^2 | {workers} | {result.photos} | "
                      f"{result.accepted} | {seconds:.1f} | {result.photos / seconds:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
