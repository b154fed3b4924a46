"""``cgsgan info``: what a file or folder is, in a few lines.

    info = describe("ffhqc512.safetensors")
    info.kind            # "network"
    dict(info.rows)      # {"preset": "ffhqc512", "revision": "v2", "Gaussians": "240,128", ...}
    print(info)          # one "name: value" line each

Knows cgsgan networks (.safetensors), official snapshots (.pkl, read without
running their code), scene files (.ply, .compressed.ply, .splat, .spz),
training run folders (with ``snapshots.json``) and datasets (folder or zip in
the EG3D / FFHQC layout).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cgsgan.apps.files import SCENE_SUFFIXES, read_scene
from cgsgan.camera import camera_positions, camera_yaw_deg, labels_to_matrices
from cgsgan.config import GeneratorConfig, find_preset
from cgsgan.data import scan
from cgsgan.io.checkpoint import infer_generator_config, read_metadata
from cgsgan.io.official import read_official_snapshot
from cgsgan.io.spz import read_spz_header

__all__ = ["Info", "describe"]


@dataclass
class Info:
    """What :func:`describe` found: a kind and (name, value) rows, in reading order."""

    path: Path
    kind: str  # network, official snapshot, scene, run, dataset
    rows: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        width = max((len(name) for name, _ in self.rows), default=0)
        lines = [f"{self.path}: {self.kind}"] + [f"  {name:<{width}}  {value}" for name, value in self.rows]
        return "\n".join(lines)


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:,.1f} MB"


def _generator_rows(cfg: GeneratorConfig) -> list[tuple[str, str]]:
    gaussians = sum(cfg.num_points * r for r in cfg.cumulative_ratios)
    return [
        ("preset", find_preset(cfg) or "custom"),
        ("revision", cfg.revision),
        ("resolution", f"{cfg.resolution} px"),
        ("levels", str(cfg.num_levels)),
        ("Gaussians", f"{gaussians:,} per head ({cfg.num_points} points)"),
    ]


def _network(path: Path) -> Info:
    metadata = read_metadata(path)
    cfg = GeneratorConfig.from_dict(json.loads(metadata["generator"]))
    info = Info(path, "network", _generator_rows(cfg))
    info.rows.append(("networks", ", ".join(json.loads(metadata["networks"]))))
    if "training" in metadata:
        training = json.loads(metadata["training"])
        info.rows.append(("trained", f"{training['images'] / 1000:,.1f} kimg (step {training['step']:,})"))
    if metadata.get("source"):
        info.rows.append(("source", metadata["source"]))
    info.rows.append(("file", _size(path)))
    return info


def _official(path: Path) -> Info:
    snapshot = read_official_snapshot(path)
    generators = [n for n in ("G_ema", "G") if n in snapshot.networks]
    if not generators:
        raise ValueError(f"{path} holds no generator (networks: {', '.join(snapshot.networks)})")
    info = Info(path, "official snapshot", _generator_rows(infer_generator_config(snapshot.networks[generators[0]])))
    info.rows.append(("networks", ", ".join(snapshot.networks)))
    if snapshot.optimizers:
        info.rows.append(("optimisers", ", ".join(snapshot.optimizers)))
    info.rows.append(("file", _size(path)))
    info.rows.append(("use", f"cgsgan convert {path.name} {path.stem}.safetensors (or pass it as --network)"))
    return info


def _scene(path: Path) -> Info:
    scene = read_scene(path)
    xyz, opacity = scene.xyz[0], scene.opacities()[0, :, 0]
    low, high = xyz.min(dim=0).values.tolist(), xyz.max(dim=0).values.tolist()
    scale = scene.scales()[0].max(dim=-1).values
    name = path.name.lower()
    fmt = next(s for s in sorted(SCENE_SUFFIXES, key=len, reverse=True) if name.endswith(s))
    if fmt == ".spz":
        fmt += f" version {read_spz_header(path).version}"
    return Info(path, "scene", [
        ("format", fmt),
        ("Gaussians", f"{scene.num_gaussians:,}"),
        ("bounds", " .. ".join("(" + ", ".join(f"{v:.3f}" for v in c) + ")" for c in (low, high))),
        ("opacity", f"mean {opacity.mean():.3f}, {(opacity > 0.5).float().mean():.1%} above 0.5"),
        ("size", f"median largest axis {scale.median():.4f}"),
        ("file", _size(path)),
    ])  # fmt: skip


def _run(path: Path) -> Info:
    snapshots = json.loads((path / "snapshots.json").read_text())["snapshots"]
    info = Info(path, "training run", [("snapshots", str(len(snapshots)))])
    if snapshots:
        last = snapshots[-1]
        info.rows.append(("newest", f"{last['network']} ({last['images'] / 1000:,.1f} kimg)"))
    options = path / "training_options.json"
    if options.is_file():
        config = json.loads(options.read_text()).get("config", {})
        if config.get("preset"):
            info.rows.append(("preset", str(config["preset"])))
    return info


def _dataset(path: Path) -> Info:
    catalog = scan(path)
    info = Info(path, "dataset", [
        ("images", f"{len(catalog.entries):,}"),
        ("resolution", f"{catalog.resolution} px"),
        ("masks", f"{sum(e.mask is not None for e in catalog.entries):,}"),
    ])  # fmt: skip
    if catalog.entries:
        labels = torch.tensor([e.label for e in catalog.entries], dtype=torch.float64)
        yaw = camera_yaw_deg(labels)
        position = camera_positions(labels)
        radius = position.norm(dim=-1)
        elevation = torch.rad2deg(torch.asin((position[:, 1] / radius).clamp(-1, 1)))
        focal = labels_to_matrices(labels)[1][:, 0, 0]
        for name, values, unit in (("yaw", yaw, " deg"), ("elevation", elevation, " deg"),
                                   ("radius", radius, ""), ("focal", focal, "")):  # fmt: skip
            info.rows.append((name, f"{values.min():.2f} .. {values.max():.2f}{unit} (mean {values.mean():.2f})"))
    if catalog.problems:
        info.rows.append(("problems", f"{len(catalog.problems)} (see: cgsgan dataset check {path})"))
    return info


def describe(path: str | os.PathLike) -> Info:
    """What ``path`` is; ValueError when it is none of the known kinds, FileNotFoundError when missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    name = path.name.lower()
    if path.is_dir() and (path / "snapshots.json").is_file():
        return _run(path)
    if path.is_dir():  # the FFHQC layout keeps dataset.json beside the resolution folders
        if not any((folder / "dataset.json").is_file() for folder in (path, path.parent)):
            raise ValueError(f"{path}: a folder without dataset.json (in it or beside it) is not a dataset or a run")
        return _dataset(path)
    if name.endswith(".zip"):
        return _dataset(path)
    if name.endswith(".safetensors"):
        return _network(path)
    if name.endswith(".pkl"):
        return _official(path)
    if any(name.endswith(s) for s in SCENE_SUFFIXES):
        return _scene(path)
    raise ValueError(f"{path}: not a network (.safetensors, .pkl), scene ({', '.join(SCENE_SUFFIXES)}) or dataset")
