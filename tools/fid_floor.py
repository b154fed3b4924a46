"""FID and KID between two sets of real images: the floor a generator's FID is read against.

    python tools/fid_floor.py                      # two disjoint 5,000-image synthetic sets (seeds 0 and 1), 64^2
    python tools/fid_floor.py DATA_A DATA_B        # any two datasets of one resolution

Both sets go through the metrics' own path (white background, the standard Inception,
the features cache), so the numbers compare with ``cgsgan metrics`` on the same data.
"""

from __future__ import annotations

import argparse
import json

from cgsgan.data.cache import default_dataset
from cgsgan.metrics import frechet_distance, kernel_distance, load_inception
from cgsgan.metrics.reals import real_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="*", help="two dataset folders [default: the synthetic heads, seeds 0 and 1]")
    parser.add_argument("--count", type=int, default=5000, help="images per synthetic set")
    parser.add_argument("--resolution", type=int, default=64, help="resolution of the synthetic sets")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if len(args.data) not in (0, 2):
        parser.error("give two datasets, or none for the synthetic pair")
    sets = args.data or [default_dataset(args.resolution, args.count, seed=s) for s in (0, 1)]
    extractor = load_inception(device=args.device)
    (first, a), (second, b) = (real_features(path, extractor) for path in sets)
    if first.resolution != second.resolution:
        parser.error(f"the sets differ in resolution: {first.resolution} and {second.resolution}")
    kid, kid_std = kernel_distance(a, b)
    result = {"a": str(sets[0]), "b": str(sets[1]), "images": [len(a), len(b)], "resolution": first.resolution,
              "fid": frechet_distance(a, b), "kid": kid, "kid_std": kid_std}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
