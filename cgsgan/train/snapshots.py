"""Snapshots of a run: each one all-or-nothing, the newest training states kept, and resuming from them.

A snapshot is a network file, ``network-snapshot-<kimg>.safetensors`` (G_ema, G and D:
what users evaluate), and a training-state file, ``training-state-<kimg>.pt``
(optimisers, counters, config). They are written one after the other; then the run's
manifest, ``snapshots.json``, is rewritten atomically to list the new snapshot with its
step. A snapshot exists once the manifest lists it, so a kill between the two files
leaves the previous snapshot as the newest. A name is never reused for another step
(a second snapshot within one kimg is ``network-snapshot-<kimg>-step<step>``), and
on load both files must hold the step the manifest names: weights are never paired
with another step's optimisers.

After each snapshot the training states of all but the newest ``keep`` are deleted
(the manifest is updated first); every network file stays.

A network file without a training state (a converted official snapshot, or a file
whose state was pruned) starts a fine-tuning run: weights, plus the official Adam
moments when ``<file>.optim.pt`` is there, and the image count from ``resume_kimg``,
else the file's metadata, else its name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cgsgan.atomic import atomic_write
from cgsgan.io.checkpoint import read_metadata, read_state_dicts, save_networks
from cgsgan.train.trainer import Counters, Trainer

MANIFEST = "snapshots.json"


@dataclass(frozen=True)
class Snapshot:
    """A network file and, when there is one, the training state saved with it."""

    network: Path
    state: Path | None = None  # None: weights only (imported, or its state was pruned)
    step: int | None = None  # as the manifest (or an older run's file) says


def state_path(network: Path) -> Path:
    """The training-state file that belongs to a network snapshot."""
    name = network.name.replace("network-snapshot-", "training-state-")
    return network.with_name(name.removesuffix(".safetensors") + ".pt")


def read_manifest(run_dir: str | os.PathLike) -> list[dict] | None:
    """The run's snapshots, oldest first ({network, state, step, images}), or None for a folder without manifest."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())["snapshots"]


def _write_manifest(run_dir: Path, entries: list[dict]) -> None:
    text = json.dumps({"version": 1, "snapshots": entries}, indent=1)
    atomic_write(run_dir / MANIFEST, lambda f: f.write(text.encode()))


def _entries(run_dir: Path) -> list[dict]:
    """The manifest's entries; for a folder written before manifests, its snapshots paired by name."""
    entries = read_manifest(run_dir)
    if entries is None:
        networks = sorted(run_dir.glob("network-snapshot-*.safetensors"))
        entries = [{"network": n.name, "state": state_path(n).name if state_path(n).is_file() else None,
                    "step": None} for n in networks]  # fmt: skip
    return entries


def next_snapshot_name(run_dir: str | os.PathLike, counters: Counters) -> str:
    """The network file name the next snapshot gets: by kimg, and by step when a listed one has that kimg."""
    name = f"network-snapshot-{counters.images // 1000:06d}.safetensors"
    if name in {e["network"] for e in _entries(Path(run_dir))}:  # a listed snapshot keeps its files
        name = name.replace(".safetensors", f"-step{counters.step:08d}.safetensors")
    return name


def save_snapshot(trainer: Trainer, run_dir: str | os.PathLike, keep: int = 2) -> Path:
    """Write the trainer's snapshot into ``run_dir``; returns the network file. Keeps the newest ``keep`` states."""
    run_dir = Path(run_dir)
    entries = _entries(run_dir)
    c = trainer.counters
    name = next_snapshot_name(run_dir, c)
    training = {"step": c.step, "images": c.images, "config": trainer.cfg.to_dict()}
    network = save_networks(run_dir / name, {"G_ema": trainer.G_ema, "G": trainer.G, "D": trainer.D},
                            trainer.g_cfg, source=f"cgsgan training, step {c.step}, {c.images} images",
                            discriminator=trainer.d_cfg, training=training)  # fmt: skip
    state = {**trainer.state(), "network": network.name}
    state_file = atomic_write(state_path(network), lambda f: torch.save(state, f))
    entries.append({"network": network.name, "state": state_file.name, "step": c.step, "images": c.images})
    for e in [e for e in entries if e["state"]][:-keep]:
        e["state"] = None
    _write_manifest(run_dir, entries)
    listed = {e["state"] for e in entries}
    for file in run_dir.glob("training-state-*.pt"):  # pruned, and those of snapshots that never got listed
        if file.name not in listed:
            file.unlink(missing_ok=True)
    return network


def latest_snapshot(run_dir: str | os.PathLike, with_state: bool = True) -> Snapshot | None:
    """The newest snapshot of a run folder (with its training state, unless ``with_state`` is False), or None."""
    run_dir = Path(run_dir)
    for entry in reversed(_entries(run_dir)):
        network = run_dir / entry["network"]
        state = run_dir / entry["state"] if entry["state"] else None
        if not network.is_file() or (state is not None and not state.is_file()):
            continue  # deleted by hand
        if state is None and with_state:
            continue
        return Snapshot(network, state, entry["step"])
    return None


def find_snapshot(resume: str | os.PathLike) -> Snapshot:
    """A ``resume`` target: a run folder's newest snapshot with state, or a network file (with its state if any)."""
    path = Path(resume)
    if path.is_dir():
        found = latest_snapshot(path)
        if found is None:
            raise FileNotFoundError(f"{path} holds no network-snapshot-*.safetensors with its training state")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume at {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: resume from a run folder or a .safetensors snapshot (convert .pkl files first)")
    state = state_path(path)
    if not state.is_file() or state == path:
        return Snapshot(path)
    entries = read_manifest(path.parent) or []
    step = next((e["step"] for e in entries if e["network"] == path.name), None)
    return Snapshot(path, state, step)


def snapshot_training(network: Path) -> dict | None:
    """What a network file says about the training it comes from ({step, images, config}), or None."""
    text = read_metadata(network).get("training")
    return json.loads(text) if text else None


def snapshot_config(snapshot: Snapshot) -> dict | None:
    """The training config a snapshot was written with (also when its state was not kept), or None for weights
    from elsewhere."""
    training = snapshot_training(snapshot.network)
    if training is not None:
        return training["config"]
    if snapshot.state is None:
        return None
    return json.loads(torch.load(snapshot.state, map_location="cpu", weights_only=True)["config"])


def imported_images(network: Path, resume_kimg: float | None = None) -> tuple[int, str]:
    """(images already shown, where that number comes from) for a weights-only start."""
    if resume_kimg is not None:
        return round(resume_kimg * 1000), "--resume-kimg"
    training = snapshot_training(network)
    if training is not None:
        return int(training["images"]), "the file's metadata"
    source = read_metadata(network).get("source", "")
    for text, where in ((source, "the file's metadata"), (network.stem, "the file name")):
        match = re.search(r"network-snapshot-(\d+)", text)
        if match:
            return int(match.group(1)) * 1000, where
    return 0, "nothing (no kimg in the file's metadata or name; pass --resume-kimg)"


def restore(trainer: Trainer, snapshot: Snapshot, resume_kimg: float | None = None, log=print) -> None:
    """Load a snapshot: everything from our own, or weights (+ official optimiser states) from an import."""
    net = snapshot.network
    networks = read_state_dicts(net, trainer.device)
    if snapshot.state is not None:
        state = torch.load(snapshot.state, map_location="cpu", weights_only=True)
        steps = {"manifest": snapshot.step, "training state": state["counters"]["step"]}
        training = snapshot_training(net)
        if training is not None:
            steps["network file"] = training["step"]
        if len({s for s in steps.values() if s is not None}) > 1 or state.get("network", net.name) != net.name:
            found = ", ".join(f"{k} step {v}" for k, v in steps.items() if v is not None)
            raise ValueError(f"{net} and {snapshot.state.name} are not one snapshot ({found}); "
                             "resume from an earlier snapshot")  # fmt: skip
        trainer.load_state(state, networks, str(net))
        return
    if not {"G", "G_ema"} & set(networks):
        raise ValueError(f"{net} has no G or G_ema network to train from")
    trainer.load_networks(networks, str(net))
    if "G" not in networks:
        log(f"{net.name} holds G_ema only (a shipped network): G starts as a copy of it")
    if "D" not in networks:
        log(f"{net.name} has no D: the discriminator starts from random weights")
    images, where = imported_images(net, resume_kimg)
    trainer.counters = Counters(step=images // trainer.cfg.batch, images=images)
    trainer._stream = None
    log(f"fine-tuning {net.name} from {images / 1000:g} kimg (from {where}): EMA ramp-up off, "
        f"D-input blur {'on' if trainer.cfg.blur_sigma > 0 else 'off'}")  # fmt: skip
    optim = net.with_name(net.name + ".optim.pt")
    if optim.is_file():
        load_official_optimizers(trainer, torch.load(optim, map_location="cpu", weights_only=True))
        log(f"optimiser states from {optim.name}")
    else:
        log(f"no optimiser states next to {net.name}: Adam starts fresh")


def _adopt_state(opt: torch.optim.Optimizer, official: dict, name: str) -> None:
    """Load an official optimiser state whose parameters line up with ours by shape, keeping our hyperparameters."""
    ours = [p for group in opt.param_groups for p in group["params"]]
    order = [i for group in official["param_groups"] for i in group["params"]]
    shapes = [tuple(official["state"][i]["exp_avg"].shape) if i in official["state"] else None for i in order]
    if len(order) != len(ours) or any(s not in (None, tuple(p.shape)) for s, p in zip(shapes, ours, strict=True)):
        raise ValueError(f"{name}: the official optimiser state does not line up with this network's parameters")
    state = {k: v for k, v in opt.state_dict().items() if k != "state"}
    state["state"] = {j: official["state"][i] for j, i in enumerate(order) if i in official["state"]}
    opt.load_state_dict(state)


def load_official_optimizers(trainer: Trainer, optimizers: dict[str, dict]) -> None:
    """The official snapshot's Adam moments (``Gboth_opt``/``Gmain_opt`` and ``Dmain_opt``) into our optimisers."""
    g = next((optimizers[k] for k in ("Gboth_opt", "Gmain_opt", "G_opt") if k in optimizers), None)
    d = next((optimizers[k] for k in ("Dmain_opt", "Dboth_opt", "D_opt") if k in optimizers), None)
    if g is None or d is None:
        raise ValueError(f"official optimiser states need a G and a D entry, found {', '.join(optimizers) or 'none'}")
    _adopt_state(trainer.opt_g, g, "G")
    _adopt_state(trainer.opt_d, d, "D")


def folder_bytes(run_dir: str | os.PathLike) -> int:
    """What the files directly in a run folder hold, in bytes."""
    return sum(e.stat().st_size for e in os.scandir(run_dir) if e.is_file(follow_symlinks=False))
