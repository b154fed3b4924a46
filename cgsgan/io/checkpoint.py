"""Network checkpoints: safetensors files with the configuration as JSON in the metadata.

A file holds one or more networks under name prefixes (``G_ema.``, ``G.``, ``D.``),
and the metadata says how to rebuild them:

    cgsgan_format   "1"
    networks        JSON list of the names in the file, e.g. ["G_ema", "G", "D"]
    generator       JSON of the GeneratorConfig every "G*" network was built with
    source          free text: where the weights came from
    training        (snapshots of a run) JSON {"step", "images", "config"}: the point of training they hold

Loading never unpickles anything. Training state (optimisers, counters, RNG)
lives in a separate file, written by the training loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from cgsgan.atomic import atomic_write
from cgsgan.config import GeneratorConfig
from cgsgan.io.official import detect_generator_config, read_official_snapshot
from cgsgan.models import CGSGenerator, build_generator
from cgsgan.models.discriminator import DEAD_BLOCK, Discriminator, DiscriminatorConfig

FORMAT = "1"
GENERATOR_NAMES = ("G_ema", "G")  # load_network's preference when no name is given


def save_networks(
    path: str | os.PathLike,
    networks: Mapping[str, nn.Module | Mapping[str, Tensor]],
    generator: GeneratorConfig,
    source: str = "",
    discriminator: DiscriminatorConfig | None = None,
    training: Mapping[str, int] | None = None,
) -> Path:
    """Write modules (or raw state dicts) under their names, atomically (temp file + rename).

    ``discriminator`` (needed to rebuild a "D" network) is stored beside the generator config;
    ``training`` ({"step", "images"}) marks a training snapshot.
    """
    tensors: dict[str, Tensor] = {}
    for name, net in networks.items():
        if "." in name or not name:
            raise ValueError(f"network names must be non-empty and without dots, got {name!r}")
        state = net.state_dict() if isinstance(net, nn.Module) else net
        for key, value in state.items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    metadata = {
        "cgsgan_format": FORMAT,
        "networks": json.dumps(list(networks)),
        "generator": json.dumps(generator.to_dict()),
        "source": source,
    }
    if discriminator is not None:
        metadata["discriminator"] = json.dumps(asdict(discriminator))
    if training is not None:
        metadata["training"] = json.dumps(dict(training))
    atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))
    return Path(path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a cgsgan checkpoint, with clear errors for other files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        hint = " (an official .pkl? import it with `cgsgan convert`)" if path.suffix == ".pkl" else ""
        raise ValueError(f"{path} is not a readable safetensors checkpoint{hint}: {e}") from None
    if metadata.get("cgsgan_format") != FORMAT:
        found = metadata.get("cgsgan_format", "none")
        raise ValueError(f"{path} is not a cgsgan checkpoint (cgsgan_format {found}, expected {FORMAT})")
    return metadata


def read_state_dicts(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, dict[str, Tensor]]:
    """Every network's state dict in the file, by name."""
    names = json.loads(read_metadata(path)["networks"])
    states: dict[str, dict[str, Tensor]] = {name: {} for name in names}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            name, _, rest = key.partition(".")
            if name not in states:
                raise ValueError(f"{path}: tensor {key!r} belongs to no listed network ({', '.join(names)})")
            states[name][rest] = f.get_tensor(key)
    return states


def load_network(path: str | os.PathLike | None = None, name: str | None = None,
                 device: str | torch.device = "cpu") -> CGSGenerator:  # fmt: skip
    """A ready generator (eval mode, no grad) from a checkpoint: ``name`` or else G_ema, else G.

    With no path, the built-in network (tiny64, trained on the synthetic heads; `cgsgan.assets`).
    An official ``.pkl`` snapshot is read with the restricted unpickler (nothing converted on disk).
    Weights stored in another float type (the built-in one is float16) load as float32."""
    if path is None:
        from cgsgan.assets import default_network

        path = default_network()
    if Path(path).suffix.lower() == ".pkl":
        return _official_generator(path, name, device)
    metadata = read_metadata(path)
    names = json.loads(metadata["networks"])
    if name is None:
        name = next((n for n in GENERATOR_NAMES if n in names), None)
        if name is None:
            raise ValueError(f"{path} holds no generator (networks: {', '.join(names)})")
    if name not in names:
        raise ValueError(f"{path} has no network {name!r}; it has {', '.join(names)}")
    if not name.startswith("G"):
        raise ValueError(f"{name!r} in {path} is not a generator")
    cfg = GeneratorConfig.from_dict(json.loads(metadata["generator"]))
    G = build_generator(cfg)
    load_state(G, read_state_dicts(path)[name], f"{path} [{name}]")
    return G.to(device).eval().requires_grad_(False)


def _official_generator(path: str | os.PathLike, name: str | None, device: str | torch.device) -> CGSGenerator:
    """load_network for an official snapshot: G_ema (or ``name``) rebuilt from its shapes."""
    networks = read_official_snapshot(path).networks
    gens = [n for n in GENERATOR_NAMES if n in networks]
    name = name or (gens[0] if gens else None)
    if name not in networks or not name.startswith("G"):
        raise ValueError(f"{path} has no generator {name or ''}; it has {', '.join(networks)}".replace("  ", " "))
    G = build_generator(infer_generator_config(networks[name]))
    load_state(G, networks[name], f"{path} [{name}]")
    return G.to(device).eval().requires_grad_(False)


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Discriminator:
    """The discriminator "D" of a checkpoint, in train mode (it is only needed to go on training)."""
    metadata = read_metadata(path)
    if "D" not in json.loads(metadata["networks"]) or "discriminator" not in metadata:
        raise ValueError(f"{path} holds no discriminator with its configuration")
    D = Discriminator(DiscriminatorConfig(**json.loads(metadata["discriminator"])))
    load_state(D, read_state_dicts(path)["D"], f"{path} [D]")
    return D.to(device)


def load_state(module: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """load_state_dict with an error that lists what is missing, extra or mis-shaped."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or extra or shapes:
        parts = [
            f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes))
            if items
        ]
        raise ValueError(f"{where} does not match the network: " + "; ".join(parts))
    module.load_state_dict(state)


# ------------------------------------------------------------------ official snapshots
def convert_official(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Import an official ``network-snapshot-*.pkl`` (read without running its code) into our format.

    The generators (G_ema, G) are rebuilt from their shapes and loaded strictly, so a file
    that does not match the architecture fails here, not later. The discriminator is
    loaded likewise (its dead ``b8_pose`` block dropped). Optimiser states, when present,
    go to ``<dst>.optim.pt`` (plain tensors and numbers, ``torch.load(weights_only=True)``).
    """
    snapshot = read_official_snapshot(src)
    gens = [n for n in GENERATOR_NAMES if n in snapshot.networks]
    if not gens:
        raise ValueError(f"{src} holds no generator (networks: {', '.join(snapshot.networks)})")
    cfg = infer_generator_config(snapshot.networks[gens[0]])
    networks: dict[str, nn.Module | dict[str, Tensor]] = {}
    for name in gens:
        G = build_generator(cfg)
        load_state(G, snapshot.networks[name], f"{src} [{name}]")
        networks[name] = G
    d_cfg = None
    if "D" in snapshot.networks:
        d_cfg = DiscriminatorConfig(resolution=cfg.resolution)
        D = Discriminator(d_cfg)
        official = {k: v for k, v in snapshot.networks["D"].items() if not k.startswith(DEAD_BLOCK)}  # never used
        load_state(D, official, f"{src} [D]")
        networks["D"] = D
    dst = save_networks(dst, networks, cfg, source=f"official snapshot {Path(src).name}", discriminator=d_cfg)
    if snapshot.optimizers:
        torch.save(snapshot.optimizers, dst.with_name(dst.name + ".optim.pt"))
    return dst


def infer_generator_config(state: Mapping[str, Tensor]) -> GeneratorConfig:
    """The GeneratorConfig of an official-layout state dict, from its shapes (and key order for the revision).

    The resolution follows the official rule: levels = log2(R) - 3. Heads cannot be
    read off the shapes; they are 8, as in every official model.
    """
    detected = detect_generator_config(state)  # resolution and revision

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise ValueError(f"not a CGS-GAN generator state dict: {key} is missing")
        return state[key].shape

    def count(prefix: str) -> int:
        return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

    block = "point_gen.transformer.first_layers.0."
    width = shape(block + "attn.c_qkv.weight")[1]
    w_dim = shape(block + "ln_1.gamma.weight")[1]
    c_dim = shape("mapping_network.embed.weight")[1] if "mapping_network.embed.weight" in state else 0
    return GeneratorConfig(
        resolution=detected["resolution"],
        revision=detected["revision"],
        num_points=shape("_xyz")[0],
        width=width,
        z_dim=shape("mapping_network.fc0.weight")[1] - (w_dim if c_dim else 0),
        w_dim=w_dim,
        c_dim=c_dim,
        mapping_layers=count("mapping_network.fc"),
        mlp_ratio=shape(block + "mlp.c_fc.weight")[0] // width,
        first_blocks=count("point_gen.transformer.first_layers."),
        pe_dim=shape("point_gen.conv_in.learnable_pe.ffm.linear.weight")[0],
        pe_res=shape("point_gen.conv_in.const_pe.const_pe")[-1],
    )
