"""Rebuild this folder's subsets of the generator conformance vectors.

The full vectors (about 25 MB, computed with the official CGS-GAN code; see
their README) are too large to ship with the tests. This script keeps every
sum, every split flag and a strided subset of the elementwise samples:

    python tests/data/conformance/subset.py PATH/TO/conformance

Rows of the sampled arrays (``*_every37``, ``*_every101``, ``*_level0_all``,
``*_pt37_ch4``, ``pe_tokens_ch8``, tokens of ``transformer_out_tok4_ch8``) are
thinned by ``ROW_STRIDE``; ``row_stride`` in each file records it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROW_STRIDE = 8
FILES = [
    "G_v1_256",
    "G_v2_256",
    "G_v2_256_ruleC",
    "G_v1_512",
    "G_v2_512",
    "G_v1_1024_lite",
    "G_v2_1024_lite",
    "G_v1_2048_lite",
    "G_v2_2048_lite",
]
KEY_FILES = [f"keys_G_{rev}_{res}" for rev in ("v1", "v2") for res in (256, 512, 1024, 2048)] + [
    "keys_D_256",
    "keys_D_512",
]
COPIED = ["fill_check.json", "D_256.npz", "D_256_ruleC.npz"]  # small enough to keep whole
KEY_FIELDS = ("revision", "resolution", "num_ws", "gaussians_per_sample", "anchors_per_sample", "n_parameters_total")
D_KEY_FIELDS = ("resolution", "n_parameters_total", "parameters_by_group")
THINNED = ("_every37", "_every101", "_level0_all", "_ch4", "pe_tokens_ch8")


def thin(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith("transformer_out_tok4_ch8"):  # [levels, B, tokens, channels]
        return value[:, :, ::ROW_STRIDE]
    if any(name.endswith(s) for s in THINNED):  # [B, rows, ...]
        return value[:, ::ROW_STRIDE]
    return value


def main(source: Path) -> None:
    here = Path(__file__).parent
    for stem in FILES:
        with np.load(source / f"{stem}.npz") as full:
            kept = {k: thin(k, full[k]) for k in full.files if k != "c"}
        np.savez_compressed(here / f"{stem}.npz", row_stride=np.int64(ROW_STRIDE), **kept)
    for stem in KEY_FILES:
        full = json.loads((source / f"{stem}.json").read_text())
        small = {k: full[k] for k in (D_KEY_FIELDS if full["model"] == "D" else KEY_FIELDS)}
        small["state_dict"] = [[e["key"], e["shape"], e["dtype"]] for e in full["state_dict"]]
        (here / f"{stem}.json").write_text(json.dumps(small, separators=(",", ":")))
    for name in COPIED:
        (here / name).write_bytes((source / name).read_bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
