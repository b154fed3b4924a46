"""Weight fill rules and comparisons for the official conformance vectors (tests/data/conformance).

The vectors were computed with the official networks whose state dicts were
filled deterministically from each key's name (see ``fill_rule_a``), so our
networks, filled the same way, must reproduce them.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "conformance"
FILL_SCALE = 0.5
MAPPING_FC = re.compile(r"^(mapping_network|mapping)\.fc\d+\.(weight|bias)$")


def key_normal(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The rule-A value of one entry: a standard normal seeded by crc32(key), times 0.5, in float64."""
    return np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape) * FILL_SCALE


def fill_rule_a(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every floating entry (parameters and buffers) from its key; integer buffers unchanged."""
    return {
        k: torch.from_numpy(key_normal(k, tuple(v.shape)).astype(np.float32)) if v.is_floating_point() else v
        for k, v in state.items()
    }


def fill_rule_c(state: dict[str, torch.Tensor], parameter_names: set[str]) -> dict[str, torch.Tensor]:
    """Parameters and w_avg as rule A, mapping FCs x100, other buffers as constructed."""
    out = {}
    for k, v in state.items():
        if k in parameter_names or k.endswith("w_avg"):
            value = key_normal(k, tuple(v.shape)).astype(np.float32)
            if MAPPING_FC.match(k):  # the rule-A float32 value times 100 in float64, cast back
                value = (value.astype(np.float64) * 100.0).astype(np.float32)
            out[k] = torch.from_numpy(value)
        else:
            out[k] = v
    return out


def load_vectors(stem: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{stem}.npz") as f:
        return {k: f[k] for k in f.files}


def load_keys(stem: str) -> dict:
    return json.loads((DATA / f"{stem}.json").read_text())


def assert_close(name: str, ours: torch.Tensor | np.ndarray, ref: np.ndarray, atol: float = 5e-5, rtol: float = 1e-5):
    """Elementwise |ours - ref| <= atol + rtol |ref| (the acceptance suggested with the vectors)."""
    ours = ours.detach().double().cpu().numpy() if torch.is_tensor(ours) else np.asarray(ours, dtype=np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    err = np.abs(ours - ref) - (atol + rtol * np.abs(ref))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= 0, f"{name}: |diff| {abs(ours[worst] - ref[worst]):.3g} at {worst} (ref {ref[worst]:.4g})"


def assert_sum_close(name: str, ours: torch.Tensor, ref_sum: np.ndarray, ref_abssum: np.ndarray, rel: float = 2e-5):
    """|sum ours - sum ref| <= rel * abssum ref, per entry."""
    diff = np.abs(ours.detach().double().cpu().numpy() - ref_sum)
    bound = rel * ref_abssum
    assert (diff <= bound).all(), f"{name}: sum off by {diff.max():.3g}, allowed {bound.min():.3g}"
