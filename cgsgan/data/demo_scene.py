"""A procedural, stylised human head made of 3D Gaussians (no download, no model).

``demo_head(seed, count)`` builds the head as an implicit solid, a smooth union
of simple shapes, and covers its surface with flat, opaque Gaussian discs:

- skin: cranium, jaw, chin, brow ridge, cheeks, nose (bridge, tip, wings),
  two ears and a neck down to y = -0.3, blended into one closed surface;
- hair: a cap over the top and back of the head, cut at a hairline that is
  high on the forehead, lower above the ears and lowest at the nape;
- eyes: flattened eyeballs whose visible part is clipped by the lids, with
  white sclera, a coloured iris, a dark pupil and a catch light;
- eyebrows, lash lines, nostrils and cheeks, painted on the skin;
- lips: an upper and a lower lip with a dark seam between them.

Every Gaussian lies on the surface, flattened along the surface normal and
oriented by a quaternion built from its tangent frame. Colours carry baked
lighting (a soft key light plus ambient occlusion), because the renderer has
none: without it the nose and the brows would vanish in a frontal view.

World frame as everywhere in cgsgan: y up, the face looks toward +z; the head
is about 0.22 wide, 0.28 tall and 0.25 deep, centred near y = 0.04, and the
scene lies well inside [-0.5, 0.5]^3. ``seed`` varies skin tone, hair and iris
colour and the proportions slightly; the same seed gives the same scene.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.nn import functional as F

from cgsgan.gaussians import GaussianScene

__all__ = ["demo_head"]

MIN_COUNT = 1000
DTYPE = torch.float32  # geometry is built in float32: ample for a head 0.3 units across

# Material ids; a surface point takes the material of the part closest to it.
SKIN, HAIR, EYE, LIP = range(4)

SKIN_TONES = (
    (0.96, 0.80, 0.69),
    (0.93, 0.74, 0.60),
    (0.84, 0.63, 0.48),
    (0.68, 0.48, 0.34),
    (0.50, 0.34, 0.24),
)
HAIR_COLOURS = (
    (0.09, 0.07, 0.06),  # black
    (0.27, 0.16, 0.09),  # dark brown
    (0.50, 0.33, 0.17),  # light brown
    (0.82, 0.66, 0.40),  # blond
    (0.58, 0.24, 0.10),  # auburn
)
IRIS_COLOURS = (
    (0.33, 0.20, 0.10),  # brown
    (0.22, 0.42, 0.62),  # blue
    (0.30, 0.45, 0.28),  # green
    (0.45, 0.33, 0.18),  # hazel
)

LIGHT = (0.35, 0.55, 0.76)  # key light direction (from the viewer's upper right)
SAMPLE_BAND = 0.004  # candidate points within this field value of the surface are kept
CANDIDATE_BATCH = 1 << 16
CELL = 0.01  # grid cell size for culling candidates far from the surface
OPACITY = 0.97
BACKING_SHARE = 0.12  # share of the Gaussians in the backing layer under the surface
BACKING_DEPTH = 0.003  # how far below the surface the backing layer lies
BACKING_GROWTH = 1.8  # backing discs are this much wider than the surface discs


# --------------------------------------------------------------------- style
@dataclass(frozen=True)
class _Style:
    """Per-seed look: colours and proportion factors (1 = the average head)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    width: float  # scales x of the skull and jaw
    height: float  # scales y of the skull
    jaw: float  # scales the jaw width
    nose: float  # scales the nose length
    eye_x: float  # |x| of the eye centres
    hairline: float  # forehead hairline height


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=DTYPE))


def _pick(gen: torch.Generator, palette: tuple, jitter: float) -> tuple[float, float, float]:
    """A palette entry with a small random brightness change."""
    index = int(torch.randint(len(palette), (), generator=gen))
    gain = _uniform(gen, 1 - jitter, 1 + jitter)
    return tuple(min(1.0, c * gain) for c in palette[index])


def _sample_style(gen: torch.Generator) -> _Style:
    return _Style(
        skin=_pick(gen, SKIN_TONES, 0.04),
        hair=_pick(gen, HAIR_COLOURS, 0.1),
        iris=_pick(gen, IRIS_COLOURS, 0.1),
        width=_uniform(gen, 0.96, 1.04),
        height=_uniform(gen, 0.97, 1.03),
        jaw=_uniform(gen, 0.92, 1.06),
        nose=_uniform(gen, 0.9, 1.12),
        eye_x=_uniform(gen, 0.043, 0.048),
        hairline=_uniform(gen, 0.115, 0.13),
    )


# ------------------------------------------------------------ implicit parts
@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid, optionally tilted about x (positive tips its +y end toward +z)
    and then turned about y (positive turns its +z end toward +x)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    tilt: float = 0.0
    turn: float = 0.0

    def world_to_local(self) -> list[list[float]]:
        """3x3 rotation taking world offsets from the centre into the ellipsoid's axes."""
        ct, st = math.cos(self.tilt), math.sin(self.tilt)
        cu, su = math.cos(self.turn), math.sin(self.turn)
        tilt = [[1.0, 0.0, 0.0], [0.0, ct, st], [0.0, -st, ct]]
        turn = [[cu, 0.0, -su], [0.0, 1.0, 0.0], [su, 0.0, cu]]
        return [[sum(tilt[i][k] * turn[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def _ellipsoid_fields(p: Tensor, parts: Sequence[_Ellipsoid]) -> Tensor:
    """Approximate signed distances [P, M] of points [P, 3] to M ellipsoids at once.

    d = k0 (k0 - 1) / k1 with k0 = |q / r|, k1 = |q / r^2| (q in the ellipsoid's
    axes): exact on the surface, a good distance estimate near it. Evaluating
    all parts in one go keeps the number of tensor operations small.
    """
    centers = p.new_tensor([e.center for e in parts])  # [M, 3]
    rotations = p.new_tensor([e.world_to_local() for e in parts])  # [M, 3, 3]
    radii = p.new_tensor([e.radii for e in parts])  # [M, 3]
    d = (p.unsqueeze(1) - centers).unbind(-1)  # 3 x [P, M]
    # Rotate by hand: einsum/bmm over this layout is an order of magnitude slower.
    q = torch.stack([sum(rotations[:, i, j] * d[j] for j in range(3)) for i in range(3)], dim=-1)
    k0 = (q / radii).norm(dim=-1)
    k1 = (q / radii.square()).norm(dim=-1).clamp_min(1e-9)
    return k0 * (k0 - 1) / k1


def _smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Smooth minimum (polynomial, blend width k): a rounded union of two solids."""
    h = (k - (a - b).abs()).clamp_min(0) / k
    return torch.minimum(a, b) - h.square() * k / 4


def _neck_field(p: Tensor, radii: tuple[float, float], z: float, bottom: float, top: float) -> Tensor:
    """Vertical elliptic cylinder from y = bottom to y = top [P], flaring a little toward
    the bottom where the neck meets the shoulders.

    The bottom is domed inward (its centre 0.015 higher than its rim), so that
    from level or higher cameras the cut hides behind the rim.
    """
    flare = 1 + 0.22 * ((-0.2 - p[:, 1]) / (-0.2 - bottom)).clamp(0, 1).square()
    q = torch.stack((p[:, 0], p[:, 2] - z), dim=-1) / flare.unsqueeze(-1)
    r = p.new_tensor(radii)
    k0 = (q / r).norm(dim=-1)
    k1 = (q / r.square()).norm(dim=-1).clamp_min(1e-9)
    side = flare * k0 * (k0 - 1) / k1
    base = bottom + 0.015 * (1 - k0.square()).clamp_min(0)
    ends = torch.maximum(base - p[:, 1], p[:, 1] - top)
    return -_smin(-side, -ends, 0.008)  # rounded edges: a sharp rim would fray into fuzz


@dataclass(frozen=True)
class _Head:
    """The head as an implicit solid; ``materials(p)`` gives one field per material."""

    skin_parts: tuple[tuple[_Ellipsoid, float], ...]  # (part, blend width), in blend order
    neck: tuple[tuple[float, float], float, float, float]  # radii (x, z), z, bottom, top
    hollows: tuple[_Ellipsoid, ...]  # carved out of the skin (the bowls of the ears)
    hair_thickness: tuple[float, float]  # at the hairline and from 0.07 above it on
    hairline: tuple[float, float, float]  # front, side and back height of the hairline
    hair_z: float  # azimuth of the hairline is measured around (0, y, hair_z)
    eyes: tuple[_Ellipsoid, ...] = ()
    lips: tuple[_Ellipsoid, ...] = ()

    def _ellipsoids(self) -> tuple[_Ellipsoid, ...]:
        """Every ellipsoid: skin parts, hollows, eyes, lips, in that order."""
        return (*(part for part, _ in self.skin_parts), *self.hollows, *self.eyes, *self.lips)

    def _skin(self, p: Tensor, parts: Tensor, hollows: Tensor) -> Tensor:
        """Skin solid [P] from the fields of its parts [P, M] and hollows [P, H]: the parts
        and the neck smoothly blended, the hollows smoothly carved out."""
        value = parts[:, 0]
        for i, (_, blend) in enumerate(self.skin_parts[1:], start=1):
            value = _smin(value, parts[:, i], blend)
        radii, z, bottom, top = self.neck
        value = _smin(value, _neck_field(p, radii, z, bottom, top), 0.035)
        for i in range(hollows.shape[1]):
            value = -_smin(-value, hollows[:, i], 0.004)  # smooth subtraction
        return value

    def hairline_height(self, p: Tensor) -> Tensor:
        """Height [P] of the hairline above/below each point's azimuth around the head."""
        azimuth = torch.atan2(p[:, 0], p[:, 2] - self.hair_z)
        back = (1 - torch.cos(azimuth)) / 2  # 0 at the forehead, 1 at the nape
        front, side, nape = self.hairline
        # Quadratic through (0, front), (0.5, side), (1, nape).
        return front + (4 * side - 3 * front - nape) * back + (2 * front + 2 * nape - 4 * side) * back.square()

    def _hair(self, p: Tensor, cranium: Tensor) -> Tensor:
        """Hair volume above the hairline [P], from the cranium's field [P]: the cranium
        grown by a thickness that tapers toward the hairline, so the hair thins out
        onto the skin."""
        above = p[:, 1] - self.hairline_height(p)
        edge, full = self.hair_thickness
        thickness = edge + (full - edge) * (above / 0.07).clamp(0, 1)
        # A rounded cut: a sharp rim would be thinner than the discs that cover it.
        return -_smin(thickness - cranium, above, 0.008)

    def materials(self, p: Tensor) -> Tensor:
        """Fields [P, 4] of skin, hair, eyes and lips (large where a part is missing)."""
        fields = _ellipsoid_fields(p, self._ellipsoids())
        n_skin, n_hollow, n_eye = len(self.skin_parts), len(self.hollows), len(self.eyes)
        parts, hollows, eyes, lips = fields.split((n_skin, n_hollow, n_eye, len(self.lips)), dim=1)
        far = p.new_full((p.shape[0],), 1.0)
        return torch.stack(
            (
                self._skin(p, parts, hollows),
                self._hair(p, parts[:, 0]),
                eyes.amin(1) if n_eye else far,
                lips.amin(1) if self.lips else far,
            ),
            dim=-1,
        )

    def skin(self, p: Tensor) -> Tensor:
        """Skin solid [P]."""
        return self.materials(p)[:, SKIN]

    def field(self, p: Tensor) -> Tensor:
        """The whole head [P]: lips and hair blended into the skin, eyes cut in sharply."""
        m = self.materials(p)
        value = _smin(m[:, SKIN], m[:, LIP], 0.004)
        value = _smin(value, m[:, HAIR], 0.004)
        return torch.minimum(value, m[:, EYE])


def _skull(style: _Style) -> _Head:
    """The skin parts and hair of a style, without eyes and lips."""
    w, h = style.width, style.height
    jaw_w = 0.083 * w * style.jaw
    nose = style.nose
    parts = (
        (_Ellipsoid((0.0, 0.056, -0.012), (0.108 * w, 0.124 * h, 0.124)), 0.0),  # cranium
        (_Ellipsoid((0.0, -0.012, 0.022), (jaw_w, 0.088, 0.098)), 0.05),  # jaw and face
        (_Ellipsoid((0.0, -0.074, 0.078), (0.028, 0.024, 0.03)), 0.02),  # chin
        (_Ellipsoid((0.0, 0.078, 0.088), (0.072 * w, 0.016, 0.03)), 0.02),  # brow ridge
        (_Ellipsoid((0.047 * w, -0.012, 0.078), (0.03, 0.028, 0.035)), 0.03),  # cheeks
        (_Ellipsoid((-0.047 * w, -0.012, 0.078), (0.03, 0.028, 0.035)), 0.03),
        (_Ellipsoid((0.0, 0.024 - 0.02 * (nose - 1), 0.113), (0.0105, 0.036 * nose, 0.014), tilt=-0.42), 0.012),
        (_Ellipsoid((0.0, -0.006 - 0.03 * (nose - 1), 0.133), (0.012, 0.011, 0.012)), 0.012),  # tip
        (_Ellipsoid((0.0125, -0.012 - 0.03 * (nose - 1), 0.121), (0.0085, 0.0075, 0.01)), 0.008),  # wings
        (_Ellipsoid((-0.0125, -0.012 - 0.03 * (nose - 1), 0.121), (0.0085, 0.0075, 0.01)), 0.008),
        (_Ellipsoid((0.104 * w, 0.03, -0.012), (0.012, 0.031, 0.02), turn=0.35), 0.01),  # ears
        (_Ellipsoid((-0.104 * w, 0.03, -0.012), (0.012, 0.031, 0.02), turn=-0.35), 0.01),
    )
    return _Head(
        skin_parts=parts,
        neck=((0.054, 0.057), -0.022, -0.3, -0.02),
        hollows=tuple(
            _Ellipsoid((sign * (0.104 * w + 0.0115), 0.028, -0.008), (0.007, 0.02, 0.012), turn=sign * 0.35)
            for sign in (1.0, -1.0)
        ),
        hair_thickness=(0.004, 0.016),
        hairline=(style.hairline, 0.066, -0.055),
        hair_z=-0.02,
    )


def _surface_depths(field, xy: Sequence[tuple[float, float]], z_max: float = 0.3, steps: int = 1024) -> list[float]:
    """Front-most surface depth z at each (x, y): the first inside-to-outside crossing
    of ``field`` along +z from z = 0 (inside the head), found on a fine grid of z
    (all queries in one field evaluation) and refined by linear interpolation."""
    z = torch.linspace(0.0, z_max, steps, dtype=DTYPE)
    grid = torch.tensor(xy, dtype=DTYPE).repeat_interleave(steps, 0)
    values = field(torch.cat((grid, z.repeat(len(xy)).unsqueeze(-1)), dim=-1)).reshape(len(xy), steps)
    out = (values >= 0).to(torch.uint8).argmax(dim=1).clamp_min(1)  # first sample outside
    rows = torch.arange(len(xy))
    inner, outer = values[rows, out - 1], values[rows, out]
    t = -inner / (outer - inner).clamp_min(1e-12)
    return (z[out - 1] + t * (z[1] - z[0])).tolist()


def _build_head(style: _Style) -> _Head:
    """The full head of a style: the skull plus eyes and lips placed on its surface."""
    head = _skull(style)
    eye_y, eye_r = 0.05, (0.021, 0.0105, 0.012)
    lip_shapes = ((-0.05, (0.026, 0.0075, 0.011)), (-0.0625, (0.023, 0.0085, 0.011)))
    sides = (1.0, -1.0)
    depths = _surface_depths(head.skin, [(s * style.eye_x, eye_y) for s in sides] + [(0.0, y) for y, _ in lip_shapes])
    # The lids cover all of an eyeball but a cap; the lips stand out a little.
    eyes = tuple(
        _Ellipsoid((s * style.eye_x, eye_y, z - eye_r[2] + 0.0045), eye_r, turn=s * 0.25)
        for s, z in zip(sides, depths[:2], strict=True)
    )
    lips = tuple(_Ellipsoid((0.0, y, z - r[2] + 0.0035), r) for (y, r), z in zip(lip_shapes, depths[2:], strict=True))
    return replace(head, eyes=eyes, lips=lips)


def _gradient(fn, p: Tensor) -> tuple[Tensor, Tensor]:
    """Value [P] and gradient [P, 3] of a field at points [P, 3]."""
    with torch.enable_grad():
        q = p.detach().requires_grad_(True)
        value = fn(q)
        (grad,) = torch.autograd.grad(value.sum(), q)
    return value.detach(), grad


def _project(fn, p: Tensor, steps: int = 5) -> Tensor:
    """Move points [P, 3] onto the zero level set of ``fn`` by Newton steps along the gradient."""
    for _ in range(steps):
        value, grad = _gradient(fn, p)
        p = p - (value / grad.square().sum(-1).clamp_min(1e-12)).unsqueeze(-1) * grad
    return p


# ---------------------------------------------------------------- sampling
@dataclass(frozen=True)
class _Region:
    """A box of candidate points and the share of all Gaussians drawn from it."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    share: float

    def contains(self, p: Tensor) -> Tensor:
        return ((p >= p.new_tensor(self.lo)) & (p <= p.new_tensor(self.hi))).all(-1)

    @property
    def volume(self) -> float:
        return math.prod(hi - lo for lo, hi in zip(self.lo, self.hi, strict=True))


REGIONS = (
    _Region((-0.16, -0.305, -0.17), (0.16, 0.225, 0.175), 0.0),  # everything: the rest
    _Region((-0.095, -0.115, 0.04), (0.095, 0.125, 0.17), 0.17),  # the face
    _Region((0.018, 0.035, 0.085), (0.074, 0.065, 0.14), 0.06),  # eyes: irises need fine discs
    _Region((-0.074, 0.035, 0.085), (-0.018, 0.065, 0.14), 0.06),
    _Region((-0.04, -0.08, 0.08), (0.04, -0.035, 0.15), 0.05),  # mouth
)


def _region_counts(count: int) -> list[int]:
    """Split ``count`` over the regions by share; the first region takes the rounding rest."""
    counts = [int(count * r.share) for r in REGIONS[1:]]
    return [count - sum(counts), *counts]


def _active_cells(head: _Head, region: _Region) -> tuple[Tensor, Tensor]:
    """Lower corners [C, 3] of the grid cells (about CELL wide, tiling the region exactly)
    that the surface may pass through, and the cell size [3].

    Culling by the field at the cell centres (with a safety factor for the
    approximate distances) spares evaluating the field at candidates far from
    the surface: about 20x fewer evaluations than sampling the whole box.
    """
    lo = torch.tensor(region.lo, dtype=DTYPE)
    size = torch.tensor(region.hi, dtype=DTYPE) - lo
    steps = (size / CELL).ceil().long()
    cell = size / steps
    axes = [lo[i] + cell[i] * torch.arange(int(steps[i]), dtype=DTYPE) for i in range(3)]
    corners = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    reach = 1.5 * float(cell.norm()) / 2 + SAMPLE_BAND
    return corners[head.field(corners + cell / 2).abs() < reach], cell


def _sample_region(head: _Head, region: _Region, count: int, gen: torch.Generator) -> tuple[Tensor, float]:
    """``count`` points [count, 3] within SAMPLE_BAND of the surface in a region, and the
    density of the candidates they were drawn from (per unit volume).

    Candidates are uniform over the region's active cells, so the kept points
    are uniform over the surface area (up to the field's gradient norm).
    """
    corners, cell = _active_cells(head, region)
    kept, drawn, total = [], 0, 0
    while total < count:
        need = count - total
        batch = min(max(8 * need, 4096), CANDIDATE_BATCH)  # about a quarter are kept
        index = torch.randint(corners.shape[0], (batch,), generator=gen)
        cand = corners[index] + cell * torch.rand(batch, 3, generator=gen, dtype=DTYPE)
        near = torch.nonzero(head.field(cand).abs() < SAMPLE_BAND).flatten()
        if near.numel() >= need:  # candidates drawn up to and including the last one kept
            drawn += int(near[need - 1]) + 1
            near = near[:need]
        else:
            drawn += batch
        kept.append(cand[near])
        total += near.numel()
    return torch.cat(kept), drawn / (corners.shape[0] * float(cell.prod()))


def _sample_surface(head: _Head, count: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Surface points [N, 3], unit normals [N, 3] and point spacing [N] (1 / sqrt(density))."""
    points, densities = [], []
    for region, n in zip(REGIONS, _region_counts(count), strict=True):
        p, density = _sample_region(head, region, n, gen)
        points.append(p)
        densities.append(density)
    points = _project(head.field, torch.cat(points))
    _, grad = _gradient(head.field, points)
    # A point's area density sums the candidate densities of every region that contains it.
    inside = torch.stack([r.contains(points) for r in REGIONS], dim=-1).to(points.dtype)
    candidates = inside @ points.new_tensor(densities)
    area_density = candidates * 2 * SAMPLE_BAND / grad.norm(dim=-1).clamp_min(1e-6)
    return points, F.normalize(grad, dim=-1), area_density.rsqrt()


# ------------------------------------------------------------- orientation
def _quaternion_from_matrix(rot: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) [P, 4] of rotation matrices [P, 3, 3].

    Shepperd's method without branches: each of the four rows below is 4 q_k q
    for one k; the row with the largest q_k is the best conditioned one.
    """
    m = [[rot[:, i, j] for j in range(3)] for i in range(3)]
    trace = m[0][0] + m[1][1] + m[2][2]
    rows = torch.stack(
        (
            torch.stack((1 + trace, m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]), -1),
            torch.stack((m[2][1] - m[1][2], 1 + 2 * m[0][0] - trace, m[0][1] + m[1][0], m[0][2] + m[2][0]), -1),
            torch.stack((m[0][2] - m[2][0], m[0][1] + m[1][0], 1 + 2 * m[1][1] - trace, m[1][2] + m[2][1]), -1),
            torch.stack((m[1][0] - m[0][1], m[0][2] + m[2][0], m[1][2] + m[2][1], 1 + 2 * m[2][2] - trace), -1),
        ),
        dim=1,
    )  # [P, 4, 4]
    diagonal = torch.stack([rows[:, k, k] for k in range(4)], -1)  # 4 q_k^2
    quat = F.normalize(rows[torch.arange(rot.shape[0]), diagonal.argmax(-1)], dim=-1)
    return quat * torch.where(quat[:, :1] < 0, -1.0, 1.0).to(quat)  # w >= 0


def _tangent_frames(normals: Tensor, flow: Tensor) -> Tensor:
    """Rotations [P, 3, 3] with columns (t1, t2, n): t1 is ``flow`` [P, 3] made tangent to the
    surface (any tangent where flow is parallel to the normal), t2 = n x t1."""
    t1 = flow - (flow * normals).sum(-1, keepdim=True) * normals
    fallback = torch.linalg.cross(normals, normals.new_tensor([0.0, 0.0, 1.0]).expand_as(normals), dim=-1)
    fallback = torch.where(fallback.norm(dim=-1, keepdim=True) < 1e-3, normals.new_tensor([1.0, 0.0, 0.0]), fallback)
    t1 = torch.where(t1.norm(dim=-1, keepdim=True) < 1e-4, fallback, t1)
    t1 = F.normalize(t1 - (t1 * normals).sum(-1, keepdim=True) * normals, dim=-1)
    t2 = torch.linalg.cross(normals, t1, dim=-1)
    return torch.stack((t1, t2, normals), dim=-1)


# ----------------------------------------------------------------- colours
def _occlusion(head: _Head, points: Tensor, normals: Tensor) -> Tensor:
    """Ambient-occlusion factor [P] in [0.25, 1]: how much the solid closes in along the
    normal, probed at four distances (in one field evaluation)."""
    steps = points.new_tensor([0.006, 0.012, 0.02, 0.03])
    probes = points.unsqueeze(0) + steps[:, None, None] * normals.unsqueeze(0)  # [4, P, 3]
    gaps = head.field(probes.reshape(-1, 3)).reshape(len(steps), -1)
    weights = 1 / (steps * 2 ** torch.arange(len(steps), dtype=points.dtype))
    loss = ((steps[:, None] - gaps).clamp_min(0) * weights[:, None]).sum(0)
    return (1 - 0.55 * loss).clamp(0.25, 1.0)


def _lighting(normals: Tensor, occlusion: Tensor) -> Tensor:
    """Baked brightness [P]: soft wrapped key light plus ambient, times occlusion."""
    key = ((normals @ normals.new_tensor(LIGHT) / math.dist(LIGHT, (0, 0, 0))) + 0.35) / 1.35
    return (0.5 + 0.62 * key.clamp_min(0)) * occlusion


def _ellipse_distance(points: Tensor, center: tuple[float, float], radii: tuple[float, float]) -> Tensor:
    """Normalised distance [P] of the points' (x, y) from an axis-aligned ellipse centre."""
    dx = (points[:, 0] - center[0]) / radii[0]
    dy = (points[:, 1] - center[1]) / radii[1]
    return (dx.square() + dy.square()).sqrt()


def _brow_mask(points: Tensor, normals: Tensor) -> Tensor:
    """Eyebrows [P] bool: arcs above the eyes, thick near the nose, thin at the tail."""
    x = points[:, 0].abs()
    u = ((x - 0.016) / 0.058).clamp(0, 1)  # 0 at the inner end, 1 at the tail
    centre = 0.079 + 0.011 * torch.sin(math.pi * u**0.8) - 0.004 * u
    half = 0.0055 * (1 - 0.55 * u)
    return (x > 0.016) & (x < 0.074) & ((points[:, 1] - centre).abs() < half) & (normals[:, 2] > 0.2)


def _skin_colours(head: _Head, style: _Style, points: Tensor, normals: Tensor) -> Tensor:
    """Skin albedo [P, 3] with painted features: brows, lash lines, nostrils, blush."""
    skin = points.new_tensor(style.skin).expand_as(points).clone()
    # Warm blush on the cheeks and the nose tip.
    blush = torch.exp(-(_ellipse_distance(points, (0.05, -0.015), (0.028, 0.022)).square()))
    blush = blush + torch.exp(-(_ellipse_distance(points, (-0.05, -0.015), (0.028, 0.022)).square()))
    blush = blush * (points[:, 2] > 0.04)
    skin = skin * (1 - 0.12 * blush.unsqueeze(-1) * points.new_tensor([0.0, 0.5, 0.6]))
    # Nostrils: dark patches under the nose tip.
    for sign in (1.0, -1.0):
        nostril = _ellipse_distance(points[:, [0, 2]], (sign * 0.0075, 0.126), (0.0035, 0.005)) < 1
        nostril &= (normals[:, 1] < -0.7) & (points[:, 1] < -0.01)
        skin[nostril] = skin[nostril] * 0.45
    # Lash lines along the upper lids, eyebrows in a darkened hair colour.
    eye_gap = _ellipsoid_fields(points, head.eyes).amin(1)
    lash = (eye_gap < 0.0035) & (points[:, 1] > 0.048) & (points[:, 2] > 0.05)
    skin[lash] = points.new_tensor([0.08, 0.06, 0.05])
    brow = points.new_tensor(style.hair) * 0.8 + 0.04
    skin[_brow_mask(points, normals)] = brow
    return skin


def _eye_colours(head: _Head, style: _Style, points: Tensor) -> Tensor:
    """Sclera, iris (darker rim), pupil and a catch light [P, 3] of eye points [P, 3].

    The iris is centred on the visible part of each eye (the eyeballs are
    turned outward, so their visible caps are not centred on the eyeball).
    """
    colour = points.new_tensor([0.94, 0.93, 0.9]).expand_as(points).clone()
    iris = points.new_tensor(style.iris)
    for eye in head.eyes:
        side = points[:, 0] * eye.center[0] > 0
        if not side.any():
            continue
        # Centre of the opening, not the centroid: its outer part is steeper, so denser.
        cx, cy = float(points[side, 0].amin() + points[side, 0].amax()) / 2, eye.center[1]
        r = _ellipse_distance(points, (cx, cy), (0.0088, 0.0088))
        shade = (1.15 - 0.45 * r).clamp(0.6, 1.1).unsqueeze(-1)
        colour = torch.where((side & (r < 1)).unsqueeze(-1), iris * shade, colour)
        colour[side & (r < 0.45)] = points.new_tensor([0.03, 0.03, 0.04])
        glint = _ellipse_distance(points, (cx + 0.0028, cy + 0.0028), (0.0017, 0.0017)) < 1
        colour[side & glint] = 1.0
    return colour


def _lip_colours(style: _Style, points: Tensor) -> Tensor:
    """Lips [P, 3]: the skin tone pushed toward red, with a dark seam between them."""
    skin = points.new_tensor(style.skin)
    lip = skin * points.new_tensor([0.85, 0.58, 0.58]) + points.new_tensor([0.08, 0.01, 0.02])
    colour = lip.expand_as(points).clone()
    seam = (points[:, 1] + 0.0565).abs() < 0.0016
    colour[seam] = lip * 0.35
    return colour


def _hair_colours(style: _Style, points: Tensor, gen: torch.Generator) -> Tensor:
    """Hair [P, 3]: the hair colour with strand streaks and per-Gaussian variation."""
    azimuth = torch.atan2(points[:, 0], points[:, 2] + 0.02)
    streak = 0.92 + 0.08 * torch.sin(azimuth * 47 + 20 * points[:, 1])
    noise = 0.85 + 0.3 * torch.rand(points.shape[0], generator=gen, dtype=points.dtype)
    return points.new_tensor(style.hair) * (streak * noise).unsqueeze(-1)


# ---------------------------------------------------------------- assembly
def _check_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise ValueError(f"count must be an integer >= {MIN_COUNT}, got {count!r}")
    if count < MIN_COUNT:
        raise ValueError(f"count must be >= {MIN_COUNT}, got {count}")
    return int(count)


def _neck_base(head: _Head, points: Tensor, normals: Tensor) -> tuple[Tensor, Tensor]:
    """The cut at the base of the neck [P] bool, and horizontal normals [P, 3] away from the
    neck's axis. Seen edge-on, bits of the cut peek out under the rim; lit like the
    neck just above it (not as a shadowed underside), they do not show."""
    _, z, bottom, _ = head.neck
    base = (points[:, 1] < bottom + 0.02) & (normals[:, 1] < -0.3)
    radial = torch.stack((points[:, 0], torch.zeros_like(points[:, 0]), points[:, 2] - z), -1)
    return base, F.normalize(radial, dim=-1)


def _paint(
    head: _Head, style: _Style, points: Tensor, normals: Tensor, material: Tensor, gen: torch.Generator
) -> Tensor:
    """Final colours [P, 3] in [0, 1]: per-material albedo times the baked lighting."""
    colours = _skin_colours(head, style, points, normals)
    for mat, paint in (
        (EYE, lambda p: _eye_colours(head, style, p)),
        (LIP, lambda p: _lip_colours(style, p)),
        (HAIR, lambda p: _hair_colours(style, p, gen)),
    ):
        mask = material == mat
        colours[mask] = paint(points[mask])
    shade = _lighting(normals, _occlusion(head, points, normals))
    base, radial = _neck_base(head, points, normals)
    shade[base] = _lighting(radial[base], torch.ones_like(shade[base]))
    eye = material == EYE
    shade[eye] = 0.35 + 0.65 * shade[eye]  # eyes stay bright in the shadow of the brows
    colours = colours * shade.unsqueeze(-1)
    # A soft sheen band makes the hair read as hair rather than as a cap.
    hair = material == HAIR
    halfway = F.normalize(normals.new_tensor(LIGHT) + normals.new_tensor([0.0, 0.3, 1.0]), dim=0)
    sheen = (normals[hair] @ halfway).clamp_min(0).pow(10).unsqueeze(-1)
    colours[hair] = colours[hair] + 0.22 * sheen * (0.5 + colours[hair])
    return colours.clamp(0.0, 1.0)


def _fit_to_curvature(head: _Head, points: Tensor, frames: Tensor, radius: Tensor) -> Tensor:
    """Per-axis tangent radii [P, 2], shrunk where the surface bends away within a disc.

    A flat disc on a strongly curved part (an ear's rim, the hair's edge, the
    neck's cut) would stick out past the silhouette as fuzz; each tangent axis
    is halved (at most twice) until the surface 2 radii away lies within 0.6
    radii of the disc plane.
    """
    radii = radius.unsqueeze(-1).repeat(1, 2)
    for _ in range(2):
        axes = frames[:, :, :2].permute(2, 0, 1) * radii.T.unsqueeze(-1)  # [2, P, 3]
        probes = torch.cat((points + 2 * axes, points - 2 * axes))  # [4, P, 3]
        bend = head.field(probes.reshape(-1, 3)).abs().reshape(2, 2, -1).amax(0)  # [2, P]
        radii = torch.where(bend.T > 0.6 * radii, 0.5 * radii, radii)
    return radii


def _discs(
    head: _Head, points: Tensor, normals: Tensor, spacing: Tensor, material: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Scales [P, 3] and quaternions [P, 4] of flat discs tangent to the surface, and
    which discs [P] kept their full size.

    The tangent radius equals the point spacing, so that neighbouring discs
    overlap into an opaque skin (less where the surface bends sharply); hair
    discs are stretched along strands that flow down from the crown.
    """
    hair = material == HAIR
    crown = points.new_tensor([0.0, 0.2, -0.02])
    flow = torch.where(hair.unsqueeze(-1), points - crown, torch.zeros_like(points))
    frames = _tangent_frames(normals, flow)
    stretch = torch.where(hair, 1.6, 1.0).to(points)
    radii = _fit_to_curvature(head, points, frames, spacing * stretch)
    full = (radii == (spacing * stretch).unsqueeze(-1)).all(-1)
    radii = radii * torch.stack((torch.ones_like(stretch), stretch.pow(-1.5)), -1)
    scales = torch.cat((radii, 0.2 * radii.amin(-1, keepdim=True)), dim=-1)
    return scales, _quaternion_from_matrix(frames), full


def _backing(
    points: Tensor, normals: Tensor, scales: Tensor, full: Tensor, count: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Indices [count] of surface Gaussians to copy into a backing layer, and their positions
    [count, 3] just below the surface.

    Random points leave small gaps between discs; through them one would see
    the far side of the head from inside (another colour). Larger copies just
    below the surface, with the colour of the point above, hide those gaps.
    They are drawn from the full-size discs first: on sharp bends, larger
    discs would stick out.
    """
    order = torch.randperm(points.shape[0], generator=gen)
    index = order[torch.argsort((~full[order]).to(torch.uint8), stable=True)][:count]
    depth = BACKING_DEPTH * scales[index, 0:1].div(scales[:, 0].median()).clamp(0.5, 1.0)
    return index, points[index] - depth * normals[index]


def demo_head(seed: int = 0, count: int = 20000) -> GaussianScene:
    """A stylised human head of ``count`` Gaussians (B = 1, float32, CPU).

    Deterministic for a ``seed`` (any int); different seeds change skin tone,
    hair and iris colour and the proportions a little. ``count`` must be an
    integer >= 1000 (ValueError otherwise); 20000 looks clean at 256 px, more
    helps at 512 px and above. See the module docstring for what it builds.
    """
    count = _check_count(count)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed) % (1 << 63))
    style = _sample_style(gen)
    head = _build_head(style)

    backing = int(count * BACKING_SHARE)
    points, normals, spacing = _sample_surface(head, count - backing, gen)
    material = head.materials(points).argmin(-1)
    colours = _paint(head, style, points, normals, material, gen)
    scales, rotations, full = _discs(head, points, normals, spacing, material)

    index, below = _backing(points, normals, scales, full, backing, gen)
    grow = scales.new_tensor([BACKING_GROWTH, BACKING_GROWTH, 1.0])
    xyz = torch.cat((points, below))
    scales = torch.cat((scales, scales[index] * grow))
    rotations = torch.cat((rotations, rotations[index]))
    colours = torch.cat((colours, colours[index]))
    return GaussianScene.from_activated(
        xyz=xyz[None].float(),
        scales=scales[None].float(),
        rotations=rotations[None].float(),
        opacities=torch.full_like(xyz[None, :, :1], OPACITY).float(),
        rgb=colours[None].float(),
    )
