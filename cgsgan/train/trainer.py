"""One process's share of training: networks, optimisers, data, counters; ``Trainer.step()`` is one iteration.

One iteration, as in the reference:

1. **G**: fresh z and fake cameras; the scenes are generated once and rendered from
   V cameras of the other samples (multi-view), each over a random background;
   loss = mean over views of softplus(-D) + KNN and centre regularisers on the
   level-0 anchors; gradients clipped at 20.
2. **D**: fakes rendered at their own cameras (this pass updates w_avg) and reals
   composited over random colours; softplus(D(fake)) + softplus(-D(real)); every
   ``r1_interval`` steps also lazy R1; gradients clipped at 5. Both D inputs are
   blurred while the blur fades out.
3. **EMA** of G with StyleGAN's half-life in images and ramp-up (none when fine-tuning).

Every random draw comes from generators seeded from ``seed`` and the step, and
the data order from a resumable sampler, so a run resumed from a snapshot
continues exactly as the uninterrupted run would have (on CPU, deterministic
kernels). A step whose loss, gradients or generated scenes are not finite is
skipped (on every process) and counted; after ``max_bad_steps`` in a row training
stops, keeping the last good snapshot. An image file that turns out unreadable is
reported by name, replaced by the next one and counted.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cgsgan.config import generator_config
from cgsgan.data import HeadsDataset, InfiniteSampler, LabelSampler
from cgsgan.gaussians import GaussianScene
from cgsgan.io.checkpoint import load_state
from cgsgan.models import CGSGenerator, build_generator
from cgsgan.models.discriminator import Discriminator
from cgsgan.models.synthesizer import precision_context
from cgsgan.render import render
from cgsgan.seeds import stream
from cgsgan.train.config import TrainConfig, TrainingError
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
from cgsgan.train.processes import Process

STATE_VERSION = 1


@dataclass
class Counters:
    step: int = 0
    images: int = 0  # real images shown to D, over all processes
    bad_in_a_row: int = 0
    skipped: int = 0  # steps skipped for non-finite losses, gradients or scenes
    tick: int = 0
    bad_files: int = 0  # unreadable images passed over (this process)


def _param_groups(G: CGSGenerator) -> list[dict]:
    """Every parameter named like "xyz" in a group of its own: v2 trains them at a reduced lr."""
    xyz = [p for n, p in G.named_parameters() if "xyz" in n]
    rest = [p for n, p in G.named_parameters() if "xyz" not in n]
    return [{"params": rest}, {"params": xyz}]


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
        self.g_cfg, self.d_cfg = g_cfg, cfg.discriminator_config()
        self.G = build_generator(g_cfg, seed=cfg.seed).to(self.device).train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            self.D = Discriminator(self.d_cfg).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.data = HeadsDataset(data_path, resolution=g_cfg.resolution, distribution=cfg.distribution,
                                 xflip=cfg.xflip, seed=cfg.seed, on_error="skip",
                                 background=cfg.background)  # fmt: skip
        self.labels = LabelSampler(self.data)
        self.opt_g = torch.optim.Adam(_param_groups(self.G), eps=1e-8)
        self.opt_d = torch.optim.Adam(self.D.parameters(), eps=1e-8)
        self._set_hyperparameters()
        self.counters = Counters()
        self._stream = None

    # ------------------------------------------------------------------ data
    def _reals(self) -> tuple[Tensor, Tensor]:
        """This process's share of the step's real images [b, 3, R, R] in [-1, 1] and labels [b, 25]."""
        if self._stream is None:
            p = self.process
            consumed = self.counters.images // p.world
            sampler = InfiniteSampler(len(self.data), p.rank, p.world, self.cfg.seed, consumed, block=self.batch_rank)
            workers = self.workers
            loader = torch.utils.data.DataLoader(
                self.data, batch_size=self.batch_rank, sampler=sampler, num_workers=workers,
                pin_memory=self.device.type == "cuda", prefetch_factor=2 if workers else None,
            )  # fmt: skip
            self._stream = iter(loader)
        batch = next(self._stream)
        self.counters.bad_files += int(batch["skipped"].sum()) if "skipped" in batch else 0
        images = batch["image"].to(self.device, torch.float32, non_blocking=True) / 127.5 - 1
        return images, batch["label"].to(self.device, non_blocking=True)

    @property
    def workers(self) -> int:
        """DataLoader processes: the config's, else 3 on CUDA as the reference and none on a CPU (whose cores
        the training itself needs)."""
        if self.cfg.workers is not None:
            return self.cfg.workers
        return 3 if self.device.type == "cuda" else 0

    def _generator(self, phase: int, chunk: int) -> torch.Generator:
        """The random stream of one pass: a function of (seed, step, phase, pass index in the global batch)."""
        return stream("train", self.cfg.seed, self.counters.step, phase, chunk)

    def _fakes(self, phase: int, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
        """z [b, z_dim], camera labels [b, 25] and background colours [b, V, 3] for one pass of a phase."""
        gen, b = self._generator(phase, self.process.rank * self.passes + chunk), self.batch_gpu
        z = torch.randn(b, self.g_cfg.z_dim, generator=gen)
        labels = self.labels.sample(b, gen)
        backgrounds = torch.rand(b, self.cfg.views, 3, generator=gen)
        if self.cfg.background == "white":  # the random-background ablation: same draws, then white
            backgrounds = torch.ones_like(backgrounds)
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
        with precision_context(self.device, self.cfg.g_precision):
            scene, anchors = self.G(z)
        scene, anchors = scene.to(torch.float32), anchors.float()  # losses and rendering in float32
        if not _finite(scene):  # skipped on every process by _phase, instead of an error in the renderer
            nan = torch.tensor(float("nan"), device=self.device)
            return {"G_loss": nan, "knn": nan, "center": nan}
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

    def _d_pass(self, chunk: int, reals: Tensor, real_labels: Tensor, update_w_avg: bool = True) -> dict[str, Tensor]:
        """Backward of one pass of the D phase: fakes rendered at their own cameras (updating w_avg), and reals."""
        z, labels, bg = self._fakes(1, chunk)
        with torch.no_grad():
            with precision_context(self.device, self.cfg.g_precision):
                scene, _ = self.G.synthesis(self.G.mapping(z, update_emas=update_w_avg))
            scene = scene.to(torch.float32)
            if not _finite(scene):
                nan = torch.tensor(float("nan"), device=self.device)
                return {"D_loss": nan, "D_real": nan, "D_fake": nan}
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

    def step(self, train_g: bool = True) -> dict[str, float]:
        """One iteration (G phase, D phase, lazy R1 phase, EMA); the stats of this step, averaged over passes.

        ``train_g=False`` trains D alone, with the same draws, reals and counters as a full step, and leaves G,
        its w_avg and G_ema as they are: a discriminator warmed up against a frozen generator."""
        reals, real_labels = self._reals()
        chunks = range(self.passes)
        real_chunks = list(zip(reals.split(self.batch_gpu), real_labels.split(self.batch_gpu), strict=True))
        self.G.requires_grad_(False)
        self.D.requires_grad_(False)
        stats, ok = {"blur_sigma": self.sigma}, True
        if train_g:
            g_stats, ok = self._phase(self.G, self.opt_g, self.cfg.clip_g, (self._g_pass(c) for c in chunks))
            stats.update(g_stats)
        d_stats, d_ok = self._phase(self.D, self.opt_d, self.cfg.clip_d,
                                    (self._d_pass(c, *real_chunks[c], train_g) for c in chunks))  # fmt: skip
        stats.update(d_stats)
        ok = ok and d_ok
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
        if train_g:
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

    def load_networks(self, networks: dict[str, dict[str, Tensor]], where: str = "the snapshot") -> None:
        """G and G_ema (each the other when absent) and D (kept as initialised when absent: a generator-only
        file fine-tunes against a fresh discriminator); weights that do not fit this run's networks are a clear
        error."""
        load_state(self.G, networks.get("G", networks.get("G_ema")), f"{where}: G")
        load_state(self.G_ema, networks.get("G_ema", networks.get("G")), f"{where}: G_ema")
        if "D" in networks:
            load_state(self.D, networks["D"], f"{where}: D")

    def load_state(self, state: dict, networks: dict[str, dict[str, Tensor]], where: str = "the snapshot") -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"training state version {state.get('version')} is not {STATE_VERSION}")
        self.load_networks(networks, where)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self._set_hyperparameters()  # a loaded state brings its own rates: a run from a snapshot may ask for others
        self.counters = Counters(**state["counters"])
        self._stream = None  # the sampler restarts at the images already consumed

    def _set_hyperparameters(self) -> None:
        """Learning rates and betas from the config: G's with the xyz group scaled (v2), D's adjusted for lazy R1."""
        cfg = self.cfg
        rest, xyz = self.opt_g.param_groups
        rest["lr"], xyz["lr"] = cfg.lr_g, cfg.lr_g * (cfg.xyz_lr_scale if cfg.revision == "v2" else 1.0)
        for group in self.opt_g.param_groups:
            group["betas"] = tuple(cfg.betas)
        lr_d, betas_d = lazy_adam_hyperparameters(cfg.lr_d, cfg.betas, cfg.r1_interval)
        for group in self.opt_d.param_groups:
            group["lr"], group["betas"] = lr_d, betas_d

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


def _finite(scene: GaussianScene) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in scene.tensors().values())


@contextlib.contextmanager
def reference_numerics(cfg: TrainConfig):
    """The reference's numerics while training: TF32 off for matmuls and cuDNN (unless ``cfg.tf32``), no reduced-
    precision fp16 reductions, cuDNN benchmark on. These are process-wide switches: restored afterwards."""
    switches = {(torch.backends.cuda.matmul, "allow_tf32"): cfg.tf32, (torch.backends.cudnn, "allow_tf32"): cfg.tf32,
                (torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction"): False,
                (torch.backends.cudnn, "benchmark"): True}  # fmt: skip
    saved = {key: getattr(*key) for key in switches}
    for (owner, name), value in switches.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)
