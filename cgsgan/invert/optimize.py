"""Inversion: the latent (and then the generator) that makes a network's head look like the given views.

Two stages, as pivotal tuning (PTI) does for StyleGAN, which the CGS-GAN
authors' own inversion tool follows:

1. **Latent**: w (one vector for every block; ``space="w+"``: one per block)
   starts at the network's w_avg and is optimised with Adam.
2. **Tuning** (``tune_steps > 0``): with that w fixed as the pivot, a copy of the
   generator's synthesis weights is fine-tuned. Two regularisers keep the head
   a head from other views: *locality* (at latents between the pivot and random
   ones, seen from random cameras, the tuned generator renders what the
   original does) and *geometry* (the pivot's Gaussian centres stay near where
   the original generator puts them).

The loss on each view renders the head over a background colour drawn afresh
every step and compares it with the view's image composited over the same
colour through its mask, so the fit is about the head: where the mask is
empty the head must be transparent. It is ``mse_weight`` times the pixel MSE
(images in [0, 1]) plus ``perceptual_weight`` times a perceptual distance
(:mod:`cgsgan.invert.perceptual`; Inception features by default), plus, when
an identity network is given, ``identity_weight`` times 1 - the cosine between
the SFace embeddings of the two faces (:mod:`cgsgan.invert.identity`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from cgsgan.camera import FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.invert.targets import View
from cgsgan.models import CGSGenerator
from cgsgan.render import render

__all__ = ["InversionConfig", "Inversion", "invert", "psnr"]

SPACES = ("w", "w+")


@dataclass(frozen=True)
class InversionConfig:
    """Steps, learning rates and loss weights (defaults after PTI and the CGS-GAN authors' inversion)."""

    space: str = "w"  # "w": one w for all blocks; "w+": one per block
    steps: int = 400  # latent steps
    lr: float = 5e-3  # the authors' tool: 5e-3 for the latent, then 5e-4 for tuning
    tune_steps: int = 200  # tuning steps; 0 keeps the generator as it is
    tune_lr: float = 5e-4
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    locality_weight: float = 1.0
    locality_mix: float = 0.5  # locality latents: this far from the pivot toward a random w
    locality_yaw_deg: float = 60.0  # locality cameras: yaw within +- this of frontal
    geometry_weight: float = 10.0
    identity_weight: float = 0.1  # the authors' weight; used when a FaceIdentity is given (needs faces >= 128^2)
    target_loss: float | None = None  # stop a stage early once its view loss is below this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be w or w+, got {self.space!r}")
        for name in ("steps", "tune_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "tune_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("mse_weight", "perceptual_weight", "locality_weight", "geometry_weight", "identity_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Inversion:
    """The result: ws [1, num_ws, w_dim], the generator that renders it (tuned, or the original), the loss
    history (one dict per step, with its stage) and the wall time of each stage in seconds."""

    ws: Tensor
    generator: CGSGenerator
    tuned: bool
    history: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def scene(self):
        """The head as a GaussianScene (batch 1)."""
        with torch.no_grad():
            return self.generator.synthesis(self.ws)[0]


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float((a - b).square().mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


def _stack(views: Sequence[View], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    if not views:
        raise ValueError("need at least one view to invert")
    sizes = {tuple(v.image.shape[-2:]) for v in views}
    if len(sizes) != 1:
        raise ValueError(f"views must share one resolution, got {sorted(sizes)}")
    images = torch.stack([v.image for v in views]).to(device)
    masks = torch.stack([v.mask for v in views]).to(device)
    labels = torch.stack([v.label for v in views]).to(device)
    return images, masks, labels


class _ViewLoss(nn.Module):
    """The loss of a head's renders against the views, over a random background colour per view and step."""

    def __init__(self, views: Sequence[View], cfg: InversionConfig, perceptual: nn.Module | None, device,
                 identity: nn.Module | None = None):  # fmt: skip
        super().__init__()
        self.images, self.masks, self.labels = _stack(views, device)
        self.resolution = self.images.shape[-1]
        self.cfg, self.perceptual = cfg, perceptual if cfg.perceptual_weight > 0 else None
        self.identity = identity if cfg.identity_weight > 0 else None
        if self.identity is not None:
            self.landmarks = torch.stack([v.landmarks for v in views]).to(device)

    def forward(self, scene, gen: torch.Generator) -> tuple[Tensor, dict]:
        colour = torch.rand(len(self.images), 3, generator=gen).to(self.images)
        out = render(scene, self.labels, self.resolution, background=colour).image
        target = self.images * self.masks + colour[:, :, None, None] * (1 - self.masks)
        mse = (out - target).square().mean()
        loss, terms = self.cfg.mse_weight * mse, {"mse": mse.item()}
        if self.perceptual is not None:
            distance = self.perceptual(out, target).mean()
            loss = loss + self.cfg.perceptual_weight * distance
            terms["perceptual"] = distance.item()
        if self.identity is not None:
            distance = self.identity(out, target, self.landmarks).mean()
            loss = loss + self.cfg.identity_weight * distance
            terms["identity"] = distance.item()
        return loss, terms


def _random_cameras(count: int, yaw_deg: float, gen: torch.Generator, device) -> Tensor:
    yaw = FRONTAL_YAW + math.radians(yaw_deg) * (2 * torch.rand(count, generator=gen, dtype=torch.float64) - 1)
    pitch = FRONTAL_PITCH + 0.2 * (torch.rand(count, generator=gen, dtype=torch.float64) - 0.5)
    return look_at(yaw, pitch, device=device)


def _stage(name: str, steps: int, params: list[Tensor], lr: float, step_loss, cfg: InversionConfig,
           history: list[dict], progress: bool) -> float:  # fmt: skip
    """Run one stage's Adam steps on ``step_loss() -> (total, view loss, terms)``; its seconds."""
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    began = time.perf_counter()
    bar = tqdm(range(steps), desc=name, unit="step", disable=not progress)
    for step in bar:
        total, loss, terms = step_loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        history.append({"stage": name, "step": step, "loss": loss.item(), **terms})
        bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{terms['mse']:.4f}")
        if cfg.target_loss is not None and loss.item() < cfg.target_loss:
            break
    bar.close()
    return time.perf_counter() - began


def invert(
    G: CGSGenerator,
    views: Sequence[View],
    cfg: InversionConfig = InversionConfig(),  # noqa: B008 (frozen)
    perceptual: nn.Module | None = None,
    progress: bool = True,
    identity: nn.Module | None = None,
) -> Inversion:
    """Invert ``views`` (one or more photos of one head, each with its camera) into ``G`` (module docstring);
    ``identity`` (a :class:`cgsgan.invert.identity.FaceIdentity`) adds the identity loss."""
    device = next(G.parameters()).device
    view_loss = _ViewLoss(views, cfg, perceptual, device, identity)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    seconds: dict[str, float] = {}
    G = G.eval().requires_grad_(False)

    # Stage 1: the latent, from w_avg.
    w_avg = G.mapping_network.w_avg.detach().to(device)
    w = nn.Parameter(w_avg.expand(1, G.num_ws if cfg.space == "w+" else 1, -1).clone())

    def latent_loss():
        loss, terms = view_loss(G.synthesis(w.expand(1, G.num_ws, -1))[0], gen)
        return loss, loss, terms

    seconds["latent"] = _stage("latent", cfg.steps, [w], cfg.lr, latent_loss, cfg, history, progress)
    ws = w.detach().expand(1, G.num_ws, -1).clone()
    if cfg.tune_steps == 0:
        return Inversion(ws, G, False, history, seconds, asdict(cfg))

    # Stage 2: pivotal tuning of a copy of the synthesis weights, with locality and geometry regularisers.
    tuned = copy.deepcopy(G)
    params = [p.requires_grad_(True) for name, p in tuned.named_parameters() if not name.startswith("mapping_")]
    with torch.no_grad():
        pivot_xyz = G.synthesis(ws)[0].xyz

    def tuning_loss():
        scene, _ = tuned.synthesis(ws)
        loss, terms = view_loss(scene, gen)
        total = loss
        if cfg.geometry_weight > 0:
            geometry = (scene.xyz - pivot_xyz).square().sum(-1).mean()
            total = total + cfg.geometry_weight * geometry
            terms["geometry"] = geometry.item()
        if cfg.locality_weight > 0:
            z = torch.randn(1, G.cfg.z_dim, generator=gen).to(device)
            with torch.no_grad():
                w_near = ws.lerp(G.mapping(z), cfg.locality_mix)
                cams = _random_cameras(1, cfg.locality_yaw_deg, gen, device)
                reference = render(G.synthesis(w_near)[0], cams, view_loss.resolution, background=1.0).image
            mine = render(tuned.synthesis(w_near)[0], cams, view_loss.resolution, background=1.0).image
            locality = (mine - reference).square().mean()
            total = total + cfg.locality_weight * locality
            terms["locality"] = locality.item()
        return total, loss, terms

    seconds["tuning"] = _stage("tuning", cfg.tune_steps, params, cfg.tune_lr, tuning_loss, cfg, history, progress)
    return Inversion(ws, tuned.eval().requires_grad_(False), True, history, seconds, asdict(cfg))
