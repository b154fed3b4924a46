"""FID and KID between two sets of real images: the floor a generator's FID is read against.

    python tools/fid_floor.py                      # two disjoint 5,000-image synthetic sets (seeds 0 and 1), 64^2
    python tools/fid_floor.py DATA_A DATA_B        # any two datasets of one resolution
    python tools/fid_floor.py --subset 1000        # disjoint 1,000-image halves of one set: the floor of fid1k

Both sets go through the metrics' own path (white background, the standard Inception,
the features cache), so the numbers compare with ``cgsgan metrics`` on the same data.
"""

from __future__ import annotations

import argparse
import json

import torch

from cgsgan.data.cache import default_dataset
from cgsgan.metrics import frechet_distance, kernel_distance, load_inception
from cgsgan.metrics.reals import real_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="*", help="two dataset folders [default: the synthetic heads, seeds 0 and 1]")
    parser.add_argument("--count", type=int, default=5000, help="images per synthetic set")
    parser.add_argument("--resolution", type=int, default=64, help="resolution of the synthetic sets")
    parser.add_argument("--subset", type=int, help="compare disjoint subsets of this many images of one dataset "
                        "(FID from N images is biased upwards: this is the floor of fid<N> numbers)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=5, help="random subset pairs with --subset (mean and std)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.subset is not None:
        if args.subset < 2 or args.draws < 1:
            parser.error(f"--subset needs at least 2 images and --draws at least 1 (got {args.subset}, {args.draws})")
        if len(args.data) > 1:
            parser.error("--subset takes one dataset (or none for the synthetic set of seed 0)")
        return subset_floor(args, parser)
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


def subset_floor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    path = args.data[0] if args.data else default_dataset(args.resolution, args.count, seed=0)
    _, features = real_features(path, load_inception(device=args.device))
    if 2 * args.subset > len(features):
        parser.error(f"two disjoint subsets of {args.subset} need {2 * args.subset} images; {path} has {len(features)}")
    gen = torch.Generator().manual_seed(0)
    fids, kids = [], []
    for _ in range(args.draws):
        order = torch.randperm(len(features), generator=gen)
        a, b = features[order[: args.subset]], features[order[args.subset : 2 * args.subset]]
        fids.append(frechet_distance(a, b))
        kids.append(kernel_distance(a, b)[0])
    fid, kid = torch.tensor(fids, dtype=torch.float64), torch.tensor(kids, dtype=torch.float64)
    result = {"data": str(path), "images": [args.subset, args.subset], "draws": args.draws,
              "fid": fid.mean().item(), "fid_std": fid.std().item() if args.draws > 1 else 0.0, "fids": fids,
              "kid": kid.mean().item()}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
