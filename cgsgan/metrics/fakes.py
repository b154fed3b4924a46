"""Inception features of a generator's images, as the reference's FID and FID3D draw them.

Fake i is a function of (seed, i) only: its z, the dataset camera it is rendered
from and (FID3D) the camera whose intrinsics the mapping's frontal label takes
are drawn in blocks of :data:`BLOCK` from a generator seeded by (seed, block). So
the first N fakes of a larger run are the N fakes of a smaller one, metrics with
the same N share their fakes, and a distributed run draws what a single process
would.

- FID: ``G.mapping(z, c=label)``, rendered from ``label`` (a random dataset camera).
- FID3D: ``G.mapping(z, c=frontal)`` with the frontal camera (yaw = pitch = pi/2,
  radius 2.7, looking at the origin, the intrinsics of another random dataset
  camera), rendered from an independently drawn dataset camera. A generator that
  ignores its label (ours, as the official one) scores the same as in FID up to
  sampling noise; the metric exists to catch generators whose 3D shape follows the
  camera they were conditioned on.

Images are rendered over white and quantised as the reference does
(x 127.5 + 128 for x in [-1, 1], clamped, truncated to uint8).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cgsgan.camera import DEFAULT_RADIUS, FRONTAL_PITCH, FRONTAL_YAW, look_at
from cgsgan.metrics.ranks import gather, share
from cgsgan.models import CGSGenerator
from cgsgan.models.synthesizer import Synthesizer
from cgsgan.render import render
from cgsgan.seeds import stream

BLOCK = 1024  # fakes drawn per random generator


def draws(seed: int, start: int, stop: int, z_dim: int, pool: int) -> tuple[Tensor, Tensor, Tensor]:
    """z [n, z_dim], camera index [n] and mapping-camera index [n] of fakes start..stop-1 (n = stop - start)."""
    zs, cams, maps = [], [], []
    for block in range(start // BLOCK, -(-stop // BLOCK)):
        gen = stream("fakes", seed, block)
        z = torch.randn(BLOCK, z_dim, generator=gen)
        cam = torch.randint(pool, (BLOCK,), generator=gen)
        mapped = torch.randint(pool, (BLOCK,), generator=gen)
        lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, BLOCK)
        zs.append(z[lo:hi]), cams.append(cam[lo:hi]), maps.append(mapped[lo:hi])
    return torch.cat(zs), torch.cat(cams), torch.cat(maps)


def frontal_labels(intrinsics_from: Tensor) -> Tensor:
    """Frontal cameras [B, 25] (yaw = pitch = pi/2, radius 2.7, looking at the origin) with the given labels'
    intrinsics, as the reference's FID3D conditions its mapping."""
    front = look_at(FRONTAL_YAW, FRONTAL_PITCH, DEFAULT_RADIUS, device=intrinsics_from.device)
    front = front.expand(len(intrinsics_from), -1).clone()
    front[:, 16:] = intrinsics_from[:, 16:]
    return front


def to_uint8(images: Tensor) -> Tensor:
    """Images in [0, 1] -> uint8 as the reference quantises them: (2x - 1) 127.5 + 128, clamped, truncated."""
    return (images * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def fake_images(G: CGSGenerator, z: Tensor, labels: Tensor, mapping_labels: Tensor, truncation_psi: float = 1.0,
                synthesize: Synthesizer | None = None) -> Tensor:  # fmt: skip
    """uint8 [B, 3, R, R]: G.mapping(z, mapping_labels) rendered from ``labels`` over white.

    ``synthesize``: the path from ws to the scene (a compiled or half-precision
    :class:`Synthesizer` of G); the plain float32 one by default."""
    with torch.no_grad():
        ws = G.mapping(z, mapping_labels, truncation_psi=truncation_psi)
        scene = (synthesize or Synthesizer(G))(ws)
        return to_uint8(render(scene, labels, G.cfg.resolution, background=1.0).image)


def fake_features(
    G: CGSGenerator,
    pool: Tensor,
    count: int,
    extractor,
    seed: int = 0,
    truncation_psi: float = 1.0,
    fid3d: bool = False,
    batch: int = 16,
    progress: bool = True,
    desc: str = "fake features",
    synthesize: Synthesizer | None = None,
) -> Tensor:
    """Features [count, 2048] float32 (CPU) of fakes 0..count-1 rendered from cameras drawn from ``pool`` [P, 25].

    Split over the processes of a distributed run; every process returns all of them.
    ``synthesize``: G's path from ws to scene (see :func:`fake_images`)."""
    from tqdm import tqdm

    if len(pool) == 0:
        raise ValueError("no cameras to render fakes from")
    device = next(G.parameters()).device
    mine = share(count)
    synthesize = synthesize or Synthesizer(G)
    parts = []
    with tqdm(total=len(mine), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(mine.start, mine.stop, batch):
            stop = min(start + batch, mine.stop)
            z, cam, mapped = draws(seed, start, stop, G.cfg.z_dim, len(pool))
            labels = pool[cam].to(device)
            mapping_labels = frontal_labels(pool[mapped].to(device)) if fid3d else labels
            with torch.no_grad():
                images = fake_images(G, z.to(device), labels, mapping_labels, truncation_psi, synthesize)
                parts.append(extractor(images).float())
            bar.update(stop - start)
    local = torch.cat(parts) if parts else torch.zeros(0, extractor.num_features, device=extractor.device)
    return gather(local, count).cpu()
