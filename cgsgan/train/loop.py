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
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cgsgan.config import PRESETS, generator_config
from cgsgan.data import HeadsDataset, InfiniteSampler, LabelSampler
from cgsgan.io.checkpoint import save_networks
from cgsgan.models import CGSGenerator, build_generator
from cgsgan.models.discriminator import Discriminator
from cgsgan.render import render
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
    batch: int = 8
    kimg: float = 1000.0  # length of training, in thousands of real images shown
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

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.batch < 4 or self.batch % 4:
            raise ValueError(f"batch must be a multiple of 4 (the minibatch-std group), got {self.batch}")
        if not 1 <= self.views:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.views > self.batch:
            raise ValueError(f"views ({self.views}) cannot exceed the batch ({self.batch})")
        if self.r1_interval < 1 or self.max_bad_steps < 1:
            raise ValueError("r1_interval and max_bad_steps must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if k == "betas" else v for k, v in values.items() if k in known}
        return cls(**values)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


@dataclass
class Counters:
    step: int = 0
    images: int = 0  # real images shown to D
    bad_in_a_row: int = 0
    skipped: int = 0
    tick: int = 0


def _param_groups(G: CGSGenerator, lr: float, xyz_scale: float) -> list[dict]:
    """v2 trains every parameter named like "xyz" at a reduced lr."""
    xyz = [p for n, p in G.named_parameters() if "xyz" in n]
    rest = [p for n, p in G.named_parameters() if "xyz" not in n]
    return [{"params": rest, "lr": lr}, {"params": xyz, "lr": lr * xyz_scale}]


def _finite_gradients(module: nn.Module) -> bool:
    return all(p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters())


class Trainer:
    """Owns the networks, optimisers, data and counters of one run; ``step()`` does one iteration."""

    def __init__(self, cfg: TrainConfig, data_path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        self.cfg, self.device = cfg, torch.device(device)
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
        if self._stream is None:
            consumed = self.counters.images
            sampler = InfiniteSampler(len(self.data), seed=self.cfg.seed, start=consumed)
            loader = torch.utils.data.DataLoader(self.data, batch_size=self.cfg.batch, sampler=sampler)
            self._stream = iter(loader)
        batch = next(self._stream)
        images = batch["image"].to(self.device, torch.float32) / 127.5 - 1
        return images, batch["label"].to(self.device)

    def _generator(self, phase: int) -> torch.Generator:
        """The random stream of one phase of the current step: a function of (seed, step, phase) only."""
        return torch.Generator().manual_seed((self.cfg.seed << 40) + (self.counters.step << 2) + phase)

    def _fakes(self, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """z [B, z_dim], camera labels [B, 25] and background colours [B, V, 3] for one phase."""
        b = self.cfg.batch
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
    def _g_phase(self) -> dict[str, float]:
        z, labels, bg = self._fakes(self._generator(0))
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        scene, anchors = self.G(z)
        adversarial = 0.0
        for v in range(self.cfg.views):
            cams = view_labels(labels, v + 1 if self.cfg.views > 1 else 0)
            logits = self.D(blur_images(self._render(scene, cams, bg[:, v]), self.sigma), cams)
            adversarial = adversarial + generator_loss(logits) / self.cfg.views
        knn = knn_loss(anchors, min(self.cfg.knn_k, anchors.shape[1] - 1))
        centre = center_loss(anchors)
        loss = adversarial + self.cfg.knn_weight * knn + self.cfg.center_weight * centre
        ok = self._apply(loss, self.G, self.opt_g, self.cfg.clip_g)
        return {"G_loss": adversarial.item(), "knn": knn.item(), "center": centre.item(), "G_ok": ok}

    def _d_phase(self, reals: Tensor, real_labels: Tensor) -> dict[str, float]:
        z, labels, bg = self._fakes(self._generator(1))
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with torch.no_grad():
            scene, _ = self.G.synthesis(self.G.mapping(z, update_emas=True))
            fakes = self._render(scene, labels, bg[:, 0])
        fake_logits = self.D(blur_images(fakes, self.sigma), labels)
        regularise = self.counters.step % self.cfg.r1_interval == 0
        real_in = blur_images(reals, self.sigma).detach().requires_grad_(regularise)
        real_logits = self.D(real_in, real_labels)
        loss = discriminator_loss(fake_logits, real_logits)
        stats = {"D_loss": loss.item(), "D_real": real_logits.mean().item(), "D_fake": fake_logits.mean().item()}
        if regularise:
            r1 = r1_loss(real_logits, real_in, self.cfg.gamma, self.cfg.r1_interval)
            loss = loss + r1
            stats["R1"] = r1.item() / self.cfg.r1_interval
        stats["D_ok"] = self._apply(loss, self.D, self.opt_d, self.cfg.clip_d)
        return stats

    def _apply(self, loss: Tensor, module: nn.Module, opt: torch.optim.Optimizer, clip: float) -> bool:
        """Backward, clip and step; a non-finite loss or gradient skips the step instead."""
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return False
        loss.backward()
        if not _finite_gradients(module):
            opt.zero_grad(set_to_none=True)
            return False
        nn.utils.clip_grad_norm_(module.parameters(), clip)
        opt.step()
        return True

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
        """One iteration (G phase, D phase, EMA); the stats of this step."""
        reals, real_labels = self._reals()
        stats = {"blur_sigma": self.sigma}
        stats.update(self._g_phase())
        stats.update(self._d_phase(reals, real_labels))
        ok = stats.pop("G_ok") and stats.pop("D_ok")
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

    def load_state(self, state: dict, networks: dict[str, dict[str, Tensor]]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"training state version {state.get('version')} is not {STATE_VERSION}")
        self.G.load_state_dict(networks["G"])
        self.G_ema.load_state_dict(networks["G_ema"])
        self.D.load_state_dict(networks["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.counters = Counters(**state["counters"])
        self._stream = None  # the sampler restarts at the images already consumed

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


def latest_snapshot(run_dir: str | os.PathLike) -> tuple[Path, Path] | None:
    """The newest (network, training state) pair in a run folder, or None."""
    run_dir = Path(run_dir)
    pairs = []
    for net in run_dir.glob("network-snapshot-*.safetensors"):
        state = run_dir / net.name.replace("network-snapshot-", "training-state-").replace(".safetensors", ".pt")
        if state.is_file():
            pairs.append((net, state))
    return max(pairs, key=lambda p: p[0].name) if pairs else None


def resume(trainer: Trainer, snapshot: tuple[Path, Path]) -> None:
    from cgsgan.io.checkpoint import read_state_dicts

    net, state_file = snapshot
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    trainer.load_state(state, {k: v for k, v in read_state_dicts(net, trainer.device).items()})


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


def train(cfg: TrainConfig, run_dir: str | os.PathLike, data_path: str | os.PathLike, device: str = "cpu",
          log=print, max_steps: int | None = None) -> Trainer:  # fmt: skip
    """Train until ``cfg.kimg`` (or ``max_steps`` more steps), resuming from the run folder's newest snapshot."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, data_path, device)
    snapshot = latest_snapshot(run_dir)
    if snapshot is not None:
        resume(trainer, snapshot)
        log(f"resumed from {snapshot[0].name} at {trainer.counters.images / 1000:.3f} kimg")
    (run_dir / "training_options.json").write_text(json.dumps({**cfg.to_dict(), "data": str(data_path)}, indent=2))
    grids = GridWriter(trainer, data_path, run_dir)
    if trainer.counters.images == 0:
        grids.write()
    stats, started, tick_start = TickStats(), time.perf_counter(), trainer.counters.images
    steps = 0
    with open(run_dir / "stats.jsonl", "a") as log_file:
        while trainer.counters.images < cfg.kimg * 1000 and (max_steps is None or steps < max_steps):
            stats.add(trainer.step())
            steps += 1
            done = trainer.counters.images >= cfg.kimg * 1000 or (max_steps is not None and steps >= max_steps)
            if trainer.counters.images - tick_start >= cfg.tick_kimg * 1000 or done:
                trainer.counters.tick += 1
                elapsed = time.perf_counter() - started
                kimg_done = (trainer.counters.images - tick_start) / 1000
                line = {
                    "tick": trainer.counters.tick,
                    "kimg": trainer.counters.images / 1000,
                    "sec_per_kimg": elapsed / max(kimg_done, 1e-9),
                    "skipped": trainer.counters.skipped,
                    **stats.means(),
                }
                log_file.write(json.dumps(line) + "\n")
                log_file.flush()
                log(_progress_line(line))
                if trainer.counters.tick % cfg.image_ticks == 0 or done:
                    grids.write()
                if trainer.counters.tick % cfg.snapshot_ticks == 0 or done:
                    trainer.save(run_dir)
                stats, started, tick_start = TickStats(), time.perf_counter(), trainer.counters.images
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
    return f"tick {line['tick']:4d}  kimg {line['kimg']:8.3f}  sec/kimg {line['sec_per_kimg']:7.1f}  {losses}"
