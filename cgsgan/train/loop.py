"""The training loop: phases, EMA, ticks, snapshots and a resume that loses nothing.

One iteration, as in the reference:

1. **G**: fresh z and fake cameras; the scenes are generated once and rendered from
   V cameras of the other samples (multi-view), each over a random background;
   loss = mean over views of softplus(-D) + KNN and centre regularisers on the
   level-0 anchors; gradients clipped at 20.
2. **D**: fakes rendered at their own cameras (this pass updates w_avg) and reals
   composited over random colours; softplus(D(fake)) + softplus(-D(real)); every
   ``r1_interval`` steps also lazy R1; gradients clipped at 5. Both D inputs are
   blurred while the blur fades out.
3. **EMA** of G with StyleGAN's half-life in images and ramp-up.

Every random draw comes from generators seeded from ``seed`` and the step, and
the data order from a resumable sampler, so a run resumed from a snapshot
continues exactly as the uninterrupted run would have (on CPU, deterministic
kernels). A step whose loss or gradients are not finite is skipped and counted;
after ``max_bad_steps`` in a row training stops, keeping the last good snapshot.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from cgsgan.config import PRESETS, generator_config
from cgsgan.data import HeadsDataset, InfiniteSampler, LabelSampler
from cgsgan.io.checkpoint import save_networks
from cgsgan.models import CGSGenerator, build_generator
from cgsgan.models.discriminator import Discriminator
from cgsgan.render import render
from cgsgan.seeds import stream
from cgsgan.train.evaluation import SnapshotMetrics
from cgsgan.train.loss import (
    blur_images,
    blur_sigma,
    center_loss,
    discriminator_loss,
    generator_loss,
    knn_loss,
    lazy_adam_hyperparameters,
    r1_loss,
    view_labels,
)

STATE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run is defined by; saved with every snapshot. Defaults follow the reference."""

    preset: str = "tiny64"
    revision: str = "v2"
    data: str | None = None  # None: the built-in synthetic heads at the preset's resolution
    distribution: str | None = None
    xflip: bool = True
    batch: int = 8  # over all processes
    batch_gpu: int | None = None  # per process and pass (gradient accumulation); None: batch / processes
    kimg: float = 15000.0  # length of training, in thousands of real images shown (the reference: 15,000)
    lr_g: float = 0.0025
    lr_d: float = 0.002
    xyz_lr_scale: float = 0.01  # v2: every "xyz" parameter at 0.01x lr (v1: 1)
    betas: tuple[float, float] = (0.0, 0.99)
    gamma: float = 1.0  # R1 weight
    r1_interval: int = 16
    views: int = 4  # multi-view regularisation; 1 renders each scene at its own camera only
    knn_k: int = 64
    knn_weight: float = 20.0
    center_weight: float = 1.0
    blur_sigma: float = 10.0
    blur_fade_kimg: float = 200.0  # at batch 32; scaled with the batch as in the reference
    ema_kimg: float = 10.0  # at batch 32; scaled with the batch
    ema_rampup: float | None = 0.05
    clip_g: float = 20.0
    clip_d: float = 5.0
    tick_kimg: float = 1.0
    snapshot_ticks: int = 50
    image_ticks: int = 10
    seed: int = 0
    max_bad_steps: int = 10
    metrics: tuple[str, ...] = ()  # evaluated on G_ema at every snapshot (official presets: fid20k_full)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.batch < 4 or self.batch % 4:
            raise ValueError(f"batch must be a multiple of 4 (the minibatch-std group), got {self.batch}")
        if self.batch_gpu is not None and (self.batch_gpu < 4 or self.batch_gpu % 4 or self.batch % self.batch_gpu):
            raise ValueError(f"batch_gpu must be a multiple of 4 that divides the batch ({self.batch}), "
                             f"got {self.batch_gpu}")  # fmt: skip
        if not 1 <= self.views:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.views > (self.batch_gpu or self.batch):
            raise ValueError(f"views ({self.views}) cannot exceed the batch per pass ({self.batch_gpu or self.batch})")
        if self.r1_interval < 1 or self.max_bad_steps < 1:
            raise ValueError("r1_interval and max_bad_steps must be >= 1")
        if self.metrics:
            from cgsgan.metrics.evaluate import parse_metrics

            parse_metrics(list(self.metrics))

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> TrainConfig:
        """The reference defaults, then the preset's own (CPU presets train shorter), then ``overrides``.

        Overrides that are None are ignored, so command-line options left unset keep the defaults."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[preset].training, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A stored config; fields it lacks (stored by an older version) take the preset's defaults."""
        known = {f.name for f in fields(cls)}
        preset = PRESETS.get(values.get("preset", cls.preset))
        values = {**(preset.training if preset else {}), **values}
        values = {k: tuple(v) if k in ("betas", "metrics") else v for k, v in values.items() if k in known}
        return cls(**values)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


@dataclass
class Counters:
    step: int = 0
    images: int = 0  # real images shown to D, over all processes
    bad_in_a_row: int = 0
    skipped: int = 0
    tick: int = 0


@dataclass(frozen=True)
class Process:
    """Where this process sits among those of a distributed run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @classmethod
    def current(cls) -> Process:
        """This process's place in the initialised default process group, or alone."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def _param_groups(G: CGSGenerator, lr: float, xyz_scale: float) -> list[dict]:
    """v2 trains every parameter named like "xyz" at a reduced lr."""
    xyz = [p for n, p in G.named_parameters() if "xyz" in n]
    rest = [p for n, p in G.named_parameters() if "xyz" not in n]
    return [{"params": rest, "lr": lr}, {"params": xyz, "lr": lr * xyz_scale}]


class Trainer:
    """Owns the networks, optimisers, data and counters of one process of a run; ``step()`` does one iteration.

    The batch of a step is split over processes and then into passes of ``batch_gpu``
    (gradient accumulation). Random draws and real images belong to a pass by its
    index in the global batch, and gradients are the mean over the global batch, so
    one process with accumulation computes the same step as several processes.
    """

    def __init__(self, cfg: TrainConfig, data_path: str | os.PathLike, device: str | torch.device = "cpu",
                 process: Process | None = None) -> None:  # fmt: skip
        self.cfg, self.device = cfg, torch.device(device)
        self.process = process or Process()
        world = self.process.world
        if cfg.batch % (4 * world):
            raise ValueError(f"batch {cfg.batch} does not split into multiples of 4 over {world} processes")
        self.batch_rank = cfg.batch // world
        self.batch_gpu = min(cfg.batch_gpu or self.batch_rank, self.batch_rank)
        if self.batch_rank % self.batch_gpu:
            raise ValueError(f"batch_gpu {self.batch_gpu} does not divide the per-process batch {self.batch_rank}")
        self.passes = self.batch_rank // self.batch_gpu
        g_cfg = generator_config(cfg.preset, revision=cfg.revision)
        self.g_cfg, self.d_cfg = g_cfg, PRESETS[cfg.preset].discriminator_config()
        self.G = build_generator(g_cfg, seed=cfg.seed).to(self.device).train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            self.D = Discriminator(self.d_cfg).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.data = HeadsDataset(
            data_path, resolution=g_cfg.resolution, distribution=cfg.distribution, xflip=cfg.xflip, seed=cfg.seed
        )
        self.labels = LabelSampler(self.data)
        xyz_scale = cfg.xyz_lr_scale if cfg.revision == "v2" else 1.0
        self.opt_g = torch.optim.Adam(_param_groups(self.G, cfg.lr_g, xyz_scale), betas=cfg.betas, eps=1e-8)
        lr_d, betas_d = lazy_adam_hyperparameters(cfg.lr_d, cfg.betas, cfg.r1_interval)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=betas_d, eps=1e-8)
        self.counters = Counters()
        self._stream = None

    # ------------------------------------------------------------------ data
    def _reals(self) -> tuple[Tensor, Tensor]:
        """This process's share of the step's real images [b, 3, R, R] in [-1, 1] and labels [b, 25]."""
        if self._stream is None:
            p = self.process
            consumed = self.counters.images // p.world
            sampler = InfiniteSampler(len(self.data), p.rank, p.world, self.cfg.seed, consumed, block=self.batch_rank)
            loader = torch.utils.data.DataLoader(self.data, batch_size=self.batch_rank, sampler=sampler)
            self._stream = iter(loader)
        batch = next(self._stream)
        images = batch["image"].to(self.device, torch.float32) / 127.5 - 1
        return images, batch["label"].to(self.device)

    def _generator(self, phase: int, chunk: int) -> torch.Generator:
        """The random stream of one pass: a function of (seed, step, phase, pass index in the global batch)."""
        return stream("train", self.cfg.seed, self.counters.step, phase, chunk)

    def _fakes(self, phase: int, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
        """z [b, z_dim], camera labels [b, 25] and background colours [b, V, 3] for one pass of a phase."""
        gen, b = self._generator(phase, self.process.rank * self.passes + chunk), self.batch_gpu
        z = torch.randn(b, self.g_cfg.z_dim, generator=gen)
        labels = self.labels.sample(b, gen)
        backgrounds = torch.rand(b, self.cfg.views, 3, generator=gen)
        return z.to(self.device), labels.to(self.device), backgrounds.to(self.device)

    def _render(self, scene, labels: Tensor, background: Tensor) -> Tensor:
        image = render(scene, labels, self.g_cfg.resolution, background=background).image
        return image * 2 - 1

    @property
    def sigma(self) -> float:
        scale = self.cfg.batch / 32
        return blur_sigma(self.counters.images, self.cfg.blur_fade_kimg * 1000 * scale, self.cfg.blur_sigma)

    # ------------------------------------------------------------------ phases
    def _g_pass(self, chunk: int) -> dict[str, Tensor]:
        """Backward of one pass of the G phase; its loss terms (detached)."""
        z, labels, bg = self._fakes(0, chunk)
        scene, anchors = self.G(z)
        adversarial = 0.0
        for v in range(self.cfg.views):
            cams = view_labels(labels, v + 1 if self.cfg.views > 1 else 0)
            logits = self.D(blur_images(self._render(scene, cams, bg[:, v]), self.sigma), cams)
            adversarial = adversarial + generator_loss(logits) / self.cfg.views
        knn = knn_loss(anchors, min(self.cfg.knn_k, anchors.shape[1] - 1))
        centre = center_loss(anchors)
        loss = adversarial + self.cfg.knn_weight * knn + self.cfg.center_weight * centre
        (loss / self.passes).backward()
        return {"G_loss": adversarial.detach(), "knn": knn.detach(), "center": centre.detach()}

    def _d_pass(self, chunk: int, reals: Tensor, real_labels: Tensor) -> dict[str, Tensor]:
        """Backward of one pass of the D phase: fakes rendered at their own cameras (updating w_avg), and reals."""
        z, labels, bg = self._fakes(1, chunk)
        with torch.no_grad():
            scene, _ = self.G.synthesis(self.G.mapping(z, update_emas=True))
            fakes = self._render(scene, labels, bg[:, 0])
        fake_logits = self.D(blur_images(fakes, self.sigma), labels)
        real_logits = self.D(blur_images(reals, self.sigma), real_labels)
        loss = discriminator_loss(fake_logits, real_logits)
        (loss / self.passes).backward()
        return {"D_loss": loss.detach(), "D_real": real_logits.detach().mean(), "D_fake": fake_logits.detach().mean()}

    def _r1_pass(self, reals: Tensor, real_labels: Tensor) -> dict[str, Tensor]:
        """Backward of one pass of lazy R1 (its own D step every ``r1_interval`` steps, as the reference)."""
        real_in = blur_images(reals, self.sigma).detach().requires_grad_(True)
        r1 = r1_loss(self.D(real_in, real_labels), real_in, self.cfg.gamma, self.cfg.r1_interval)
        (r1 / self.passes).backward()
        return {"R1": r1.detach() / self.cfg.r1_interval}

    def _phase(self, module: nn.Module, opt: torch.optim.Optimizer, clip: float, passes) -> tuple[dict, bool]:
        """Accumulate the passes' gradients, average them over processes, clip and step.

        A non-finite loss or gradient on any process skips the step on every process."""
        module.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        stats: dict[str, list[Tensor]] = defaultdict(list)
        for pass_stats in passes:
            for k, v in pass_stats.items():
                stats[k].append(v)
        means = {k: torch.stack(v).mean() for k, v in stats.items()}
        finite = torch.stack(list(means.values())).isfinite().all()
        params = list(module.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.flatten() for g in grads] + [torch.where(finite, 0.0, torch.nan).to(grads[0]).view(1)])
        if self.process.distributed:
            dist.all_reduce(flat)
            flat /= self.process.world
        ok = bool(flat.isfinite().all())
        if ok:
            for p, g in zip(params, flat[:-1].split([p.numel() for p in params]), strict=True):
                p.grad = g.view_as(p)
            nn.utils.clip_grad_norm_(params, clip)
            opt.step()
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(False)
        return {k: v.item() for k, v in means.items()}, ok

    def _update_ema(self) -> None:
        scale = self.cfg.batch / 32
        ema_images = self.cfg.ema_kimg * 1000 * scale
        if self.cfg.ema_rampup is not None:
            ema_images = min(ema_images, self.counters.images * self.cfg.ema_rampup)
        beta = 0.5 ** (self.cfg.batch / max(ema_images, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)

    def step(self) -> dict[str, float]:
        """One iteration (G phase, D phase, lazy R1 phase, EMA); the stats of this step, averaged over passes."""
        reals, real_labels = self._reals()
        chunks = range(self.passes)
        real_chunks = list(zip(reals.split(self.batch_gpu), real_labels.split(self.batch_gpu), strict=True))
        self.G.requires_grad_(False)
        self.D.requires_grad_(False)
        stats = {"blur_sigma": self.sigma}
        g_stats, g_ok = self._phase(self.G, self.opt_g, self.cfg.clip_g, (self._g_pass(c) for c in chunks))
        d_stats, d_ok = self._phase(self.D, self.opt_d, self.cfg.clip_d,
                                    (self._d_pass(c, *real_chunks[c]) for c in chunks))  # fmt: skip
        stats.update(g_stats, **d_stats)
        ok = g_ok and d_ok
        if self.counters.step % self.cfg.r1_interval == 0:
            r1_stats, r1_ok = self._phase(self.D, self.opt_d, self.cfg.clip_d, (self._r1_pass(*r) for r in real_chunks))
            stats.update(r1_stats)
            ok = ok and r1_ok
        c = self.counters
        if ok:
            c.bad_in_a_row = 0
        else:
            c.bad_in_a_row += 1
            c.skipped += 1
            if c.bad_in_a_row >= self.cfg.max_bad_steps:
                raise TrainingError(
                    f"{c.bad_in_a_row} steps in a row had non-finite losses or gradients (at step {c.step}); "
                    "stopped, the last snapshot is intact. Try a lower learning rate or a different seed."
                )
        self._update_ema()  # with the image count before this step, as the reference
        c.images += self.cfg.batch
        c.step += 1
        return stats

    # ------------------------------------------------------------------ snapshots
    def state(self) -> dict:
        """The training state beyond the network weights: optimisers, counters, config (weights_only-loadable)."""
        return {
            "version": STATE_VERSION,
            "config": json.dumps(self.cfg.to_dict()),
            "counters": asdict(self.counters),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_networks(self, networks: dict[str, dict[str, Tensor]]) -> None:
        self.G.load_state_dict(networks["G"])
        self.G_ema.load_state_dict(networks.get("G_ema", networks["G"]))
        self.D.load_state_dict(networks["D"])

    def load_state(self, state: dict, networks: dict[str, dict[str, Tensor]]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"training state version {state.get('version')} is not {STATE_VERSION}")
        self.load_networks(networks)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.counters = Counters(**state["counters"])
        self._stream = None  # the sampler restarts at the images already consumed

    def broadcast(self) -> None:
        """Make every process hold rank 0's networks (the reference broadcasts once at start-up), and check that
        all resumed from the same point (optimiser states are not broadcast: each process loads its own)."""
        if not self.process.distributed:
            return
        for module in (self.G, self.G_ema, self.D):
            for t in (*module.parameters(), *module.buffers()):
                dist.broadcast(t.data, src=0)
        step = torch.tensor([self.counters.step, -self.counters.step], device=self.device)
        dist.all_reduce(step, op=dist.ReduceOp.MAX)
        if step[0] != -step[1]:
            raise TrainingError("the processes resumed from different snapshots: every process must see the "
                                "same run folder (a shared file system on several machines)")  # fmt: skip

    def save(self, run_dir: Path) -> Path:
        """network-snapshot-<kimg>.safetensors plus its training-state-<kimg>.pt, both written atomically."""
        from cgsgan.atomic import atomic_write

        kimg = self.counters.images // 1000
        net = save_networks(
            run_dir / f"network-snapshot-{kimg:06d}.safetensors",
            {"G_ema": self.G_ema, "G": self.G, "D": self.D},
            self.g_cfg,
            source=f"cgsgan training, step {self.counters.step}, {self.counters.images} images",
            discriminator=self.d_cfg,
        )
        state = self.state()
        atomic_write(run_dir / f"training-state-{kimg:06d}.pt", lambda f: torch.save(state, f))
        return net


def state_path(network: Path) -> Path:
    """The training-state file that belongs to a network snapshot."""
    name = network.name.replace("network-snapshot-", "training-state-")
    return network.with_name(name.removesuffix(".safetensors") + ".pt")


def latest_snapshot(run_dir: str | os.PathLike) -> tuple[Path, Path] | None:
    """The newest (network, training state) pair in a run folder, or None."""
    pairs = [(net, state_path(net)) for net in Path(run_dir).glob("network-snapshot-*.safetensors")]
    pairs = [p for p in pairs if p[1].is_file()]
    return max(pairs, key=lambda p: p[0].name) if pairs else None


def find_snapshot(resume: str | os.PathLike) -> tuple[Path, Path | None]:
    """``--resume`` target -> (network file, its training state or None).

    A run folder gives its newest snapshot; a network file gives itself and its training state
    when there is one (a converted official checkpoint has none: weights, plus optimisers if
    its ``.optim.pt`` is there)."""
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
    return path, state if state.is_file() and state != path else None


def snapshot_config(snapshot: tuple[Path, Path | None]) -> dict | None:
    """The training config stored with a snapshot, or None when it has no training state."""
    if snapshot[1] is None:
        return None
    return json.loads(torch.load(snapshot[1], map_location="cpu", weights_only=True)["config"])


def resume(trainer: Trainer, snapshot: tuple[Path, Path | None], log=print) -> None:
    """Restore a snapshot: everything from our own, or weights (+ official optimiser states) from an import."""
    from cgsgan.io.checkpoint import read_state_dicts

    net, state_file = snapshot
    networks = read_state_dicts(net, trainer.device)
    if state_file is not None:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        trainer.load_state(state, networks)
        return
    missing = {"G", "D"} - set(networks)
    if missing:
        raise ValueError(f"{net} has no {' or '.join(sorted(missing))} network to train from")
    trainer.load_networks(networks)
    match = re.search(r"(\d+)$", net.stem)
    kimg = int(match.group(1)) if match and net.stem.startswith("network-snapshot-") else 0
    trainer.counters = Counters(step=kimg * 1000 // trainer.cfg.batch, images=kimg * 1000)
    trainer._stream = None
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


@dataclass
class TickStats:
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            if isinstance(v, float | int) and math.isfinite(v):
                self.sums[k] += v
                self.counts[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def peak_memory_gb(device: torch.device) -> float:
    """CUDA: the allocator's peak since the last call. CPU: this process's peak resident memory so far."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak / 2**30
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


class Loggers:
    """Tick statistics to stats.jsonl always, TensorBoard when it is installed, wandb when asked for."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, wandb_project: str | None = None, log=print) -> None:
        self.jsonl = open(run_dir / "stats.jsonl", "a")  # noqa: SIM115 (closed by close())
        self.tensorboard = self.wandb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir))
        except ImportError:
            pass
        if wandb_project:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("--wandb needs the wandb package: pip install wandb") from e
            self.wandb = wandb.init(project=wandb_project, dir=str(run_dir), name=run_dir.name, config=cfg.to_dict(),
                                    resume="allow")  # fmt: skip
        self.log = log

    def write(self, line: dict) -> None:
        self.jsonl.write(json.dumps(line) + "\n")
        self.jsonl.flush()
        step = round(line["kimg"] * 1000)
        scalars = {k: v for k, v in line.items() if k not in ("tick", "kimg") and isinstance(v, float | int)}
        if self.tensorboard is not None:
            for k, v in scalars.items():
                self.tensorboard.add_scalar(k, v, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        self.log(_progress_line(line))

    def close(self) -> None:
        self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _mean_over_processes(values: dict[str, float], process: Process, device: torch.device) -> dict[str, float]:
    if not process.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / process.world).tolist(), strict=True))


def train(cfg: TrainConfig, run_dir: str | os.PathLike, data_path: str | os.PathLike, device: str = "cpu",
          log=print, max_steps: int | None = None, resume_from: str | os.PathLike | None = None,
          process: Process | None = None, wandb_project: str | None = None,
          inception: str | os.PathLike | None = None) -> Trainer:  # fmt: skip
    """Train until ``cfg.kimg`` (or ``max_steps`` more steps).

    Resumes from the run folder's newest snapshot if it has one, else from ``resume_from``
    (a run folder or a snapshot). In a distributed run every process calls this with its
    ``process``; only rank 0 writes files and logs. ``cfg.metrics`` are evaluated on G_ema
    at every snapshot by all processes (``inception``: the feature network file, default
    the installed one; see :mod:`cgsgan.train.evaluation`)."""
    run_dir = Path(run_dir)
    process = process or Process.current()
    writer = process.rank == 0
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, data_path, device, process)
    evaluation = None
    if cfg.metrics:  # built before the first step, so a missing Inception or a bad dataset fails at once
        evaluation = SnapshotMetrics(trainer, data_path, run_dir, inception, log if writer else None)
    snapshot = latest_snapshot(run_dir) or (find_snapshot(resume_from) if resume_from is not None else None)
    if snapshot is not None:
        resume(trainer, snapshot, log=log if writer else lambda _: None)
        if writer:
            where = snapshot[0].name if snapshot[0].parent == run_dir else snapshot[0]
            log(f"resumed from {where} at {trainer.counters.images / 1000:.3f} kimg")
    trainer.broadcast()
    if not writer:
        log = lambda _: None  # noqa: E731
    loggers = grids = None
    if writer:
        options = {**cfg.to_dict(), "data": str(data_path), "processes": process.world}
        (run_dir / "training_options.json").write_text(json.dumps(options, indent=2))
        loggers = Loggers(run_dir, cfg, wandb_project, log)
        grids = GridWriter(trainer, data_path, run_dir)
        if trainer.counters.images == 0:
            grids.write()
    stats, started, tick_start = TickStats(), time.perf_counter(), trainer.counters.images
    peak_memory_gb(trainer.device)  # restart the peak
    steps = 0
    try:
        while trainer.counters.images < cfg.kimg * 1000 and (max_steps is None or steps < max_steps):
            stats.add(trainer.step())
            steps += 1
            done = trainer.counters.images >= cfg.kimg * 1000 or (max_steps is not None and steps >= max_steps)
            if trainer.counters.images - tick_start < cfg.tick_kimg * 1000 and not done:
                continue
            trainer.counters.tick += 1
            elapsed = time.perf_counter() - started
            means = _mean_over_processes(stats.means(), process, trainer.device)
            memory = _mean_over_processes({"peak_memory_gb": peak_memory_gb(trainer.device)}, process, trainer.device)
            snapshot = trainer.counters.tick % cfg.snapshot_ticks == 0 or done
            network = trainer.save(run_dir) if snapshot and writer else None
            scores = evaluation(network) if snapshot and evaluation is not None else {}
            if writer:
                line = {
                    "tick": trainer.counters.tick,
                    "kimg": trainer.counters.images / 1000,
                    "sec_per_kimg": elapsed / max((trainer.counters.images - tick_start) / 1000, 1e-9),
                    "skipped": trainer.counters.skipped,
                    **memory,
                    **means,
                    **scores,
                }
                loggers.write(line)
                if trainer.counters.tick % cfg.image_ticks == 0 or done:
                    grids.write()
            stats, started, tick_start = TickStats(), time.perf_counter(), trainer.counters.images
    finally:
        if loggers is not None:
            loggers.close()
    return trainer


# ------------------------------------------------------------------ image grids
GRID_SIZE = 16  # images in a grid: 4 x 4


def image_grid(images: Tensor, columns: int) -> np.ndarray:
    """uint8 [rows H, columns W, 3] of images [N, 3, H, W] in [0, 1]."""
    n, _, h, w = images.shape
    rows = -(-n // columns)
    padded = torch.ones(rows * columns, 3, h, w)
    padded[:n] = images.detach().float().cpu().clamp(0, 1)
    grid = padded.view(rows, columns, 3, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, columns * w, 3)
    return (grid * 255).round().to(torch.uint8).numpy()


class GridWriter:
    """Fixed latents and cameras, rendered by G_ema over white at every image tick, as in the reference."""

    def __init__(self, trainer: Trainer, data_path: str | os.PathLike, run_dir: Path) -> None:
        gen = torch.Generator().manual_seed(trainer.cfg.seed + 1_000_003)
        reals = copy.copy(trainer.data)  # the same catalog, read again over white and unflipped
        reals.background, reals.xflip = "white", False
        count = min(GRID_SIZE, len(reals))
        self.z = torch.randn(count, trainer.g_cfg.z_dim, generator=gen).to(trainer.device)
        items = [reals[i] for i in torch.randperm(len(reals), generator=gen)[:count].tolist()]
        self.labels = torch.stack([item["label"] for item in items]).to(trainer.device)
        self.trainer, self.run_dir = trainer, run_dir
        path = run_dir / "reals.png"
        if not path.exists():
            self._write(path, torch.stack([item["image"] for item in items]).float() / 255)

    def _write(self, path: Path, images: Tensor) -> None:
        import imageio.v3 as iio

        from cgsgan.atomic import atomic_write

        grid = image_grid(images, columns=math.ceil(math.sqrt(len(images))))
        atomic_write(path, lambda f: f.write(iio.imwrite("<bytes>", grid, extension=".png")))

    def write(self) -> Path:
        t = self.trainer
        with torch.no_grad():
            scene, _ = t.G_ema(self.z)
            images = render(scene, self.labels, t.g_cfg.resolution, background=1.0).image
        path = self.run_dir / f"fakes-{t.counters.images // 1000:06d}.png"
        self._write(path, images)
        return path


def _progress_line(line: dict) -> str:
    losses = " ".join(f"{k} {line[k]:.3f}" for k in ("G_loss", "D_loss", "R1", "knn") if k in line)
    return (f"tick {line['tick']:4d}  kimg {line['kimg']:8.3f}  sec/kimg {line['sec_per_kimg']:7.1f}  "
            f"mem {line['peak_memory_gb']:5.2f} GB  {losses}")  # fmt: skip
