"""The CGS-GAN generator: z -> w -> a point transformer -> a hierarchy of 3D Gaussians.

Reads top to bottom in the order of the computation:

1. ``MappingNetwork``: z -> ws (unconditional: the camera input is always zeros).
2. ``PositionalEncoding``: a learnable cloud of ``num_points`` 3D points -> tokens.
3. ``Transformer``: AdaIN / layer-scale blocks driven by w; one output after the
   first six blocks and one after each further block, one per hierarchy level.
4. ``Upsampler`` per level: each token becomes ``cumulative_ratio`` children.
5. ``Heads`` per level: anchors (parents of the next level) and Gaussians, each
   placed, sized and coloured relative to its parent anchor (``child``), down
   from a virtual root (``first_anchors``).

All levels' Gaussians are output, level 0 first. Module and parameter names
follow the official implementation, so its state dicts load unchanged; where
the official code has a quirk that its weights depend on, it is kept and said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cgsgan.config import GeneratorConfig
from cgsgan.gaussians import GaussianScene, rotation_matrices
from cgsgan.nn import FullyConnectedLayer, MappingNetwork

FIELDS = ("xyz", "scale", "rotation", "color", "opacity")  # registration order of the heads
HEADS = {  # out dim, weight_init, bias_init
    "xyz": (3, 1.0, 0.0),
    "scale": (3, 0.1, -1.0),
    "rotation": (4, 0.1, 0.0),
    "color": (3, 1.0, 0.0),
    "opacity": (1, 1.0, 0.0),
}
ROOT_LOG_SCALE = -5.0  # log-scale of the virtual parent of the level-0 anchors
ROOT_OPACITY = math.log(0.1 / 0.9)  # logit(0.1)
FIRST_XYZ_GAIN = 0.2
SOFT_BOUND = 20.0  # every output but xyz passes through 20 tanh(x / 20)
QUAT_EPS = 0.001
PACKED = sum(spec[0] for spec in HEADS.values())  # 14 channels: the fields side by side, in FIELDS order
XYZ_BOUND = 0.5  # the scene lives in the cube [-0.5, 0.5]^3


def soft_bound(x: Tensor) -> Tensor:
    """20 tanh(x / 20): slope 1 near 0, bounded by +-20."""
    return SOFT_BOUND * torch.tanh(x / SOFT_BOUND)


# ----------------------------------------------------------- positional encoding
class FourierMapping(nn.Module):
    """sin(linear(p)): 3 -> pe_dim, weights uniform in +-sqrt(3) ("learnable Fourier features")."""

    def __init__(self, pe_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(3, pe_dim)
        nn.init.uniform_(self.linear.weight, -math.sqrt(9 / 3), math.sqrt(9 / 3))

    def forward(self, points: Tensor) -> Tensor:
        return torch.sin(self.linear(points))


class FourierEncoding(nn.Module):
    def __init__(self, pe_dim: int) -> None:
        super().__init__()
        self.ffm = FourierMapping(pe_dim)

    def forward(self, points: Tensor) -> Tensor:
        return self.ffm(points)


class ConstantEncoding(nn.Module):
    """The official "constant PE": three learnable lines [3, pe_dim, 1, pe_res], one per axis.

    The official code samples them with ``grid_sample`` at (x = 0, y = p_axis), but
    the lines have height 1: the sample is always the middle of the line, weighted
    by the bilinear tent 1 - |p| / 2 that zero padding gives on the height axis. So
    the encoding is sum_a (1 - |p_a| / 2) * middle_a / sqrt(3), and only the middle
    columns (255 and 256 of 512) matter. We compute that closed form: the same
    numbers and gradients, without the sampling.
    """

    def __init__(self, pe_dim: int, pe_res: int) -> None:
        super().__init__()
        self.const_pe = nn.Parameter(torch.randn(3, pe_dim, 1, pe_res))

    def middle(self) -> Tensor:
        """Each line at x = 0 with align_corners=False, [3, pe_dim]."""
        res = self.const_pe.shape[-1]
        lo, hi = (res - 1) // 2, res // 2  # the pixel centre (res - 1) / 2 lies between these
        line = self.const_pe[:, :, 0]
        return 0.5 * (line[:, :, lo] + line[:, :, hi])

    def forward(self, points: Tensor) -> Tensor:
        tent = (1.0 - points.abs() / 2).clamp_min(0.0)  # [B, N, 3]
        return tent @ self.middle() / math.sqrt(3.0)


class PositionalEncoding(nn.Module):
    """points [B, N, 3] in (-1, 1) -> tokens [B, N, 2 pe_dim] = [Fourier | constant]."""

    def __init__(self, pe_dim: int, pe_res: int) -> None:
        super().__init__()
        self.learnable_pe = FourierEncoding(pe_dim)
        self.const_pe = ConstantEncoding(pe_dim, pe_res)

    def forward(self, points: Tensor) -> Tensor:
        return torch.cat([self.learnable_pe(points), self.const_pe(points)], dim=-1)


# ------------------------------------------------------------------ transformer
class AdaptiveNorm(nn.Module):
    """AdaIN over the points: normalise each channel over the token axis, then gamma(w) x + beta(w)."""

    def __init__(self, width: int, w_dim: int) -> None:
        super().__init__()
        self.gamma = FullyConnectedLayer(w_dim, width, weight_init=1.0, bias_init=1.0)
        self.beta = FullyConnectedLayer(w_dim, width, weight_init=1.0, bias_init=0.0)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x [B, N, C], w [B, 1, w_dim]."""
        dtype = x.dtype
        x = x.float()
        # Mean and biased variance over the tokens as products with a row of 1/N: on CPU several
        # times faster than a reduction over the strided token axis. Two passes, so no cancellation.
        average = torch.full((x.shape[0], 1, x.shape[1]), 1.0 / x.shape[1], device=x.device)
        centred = x - torch.bmm(average, x)
        std = torch.bmm(average, centred * centred).sqrt()
        # gamma (x - mean) / (std + eps) + beta, the scale folded into [B, 1, C] first.
        return torch.addcmul(self.beta(w), centred, self.gamma(w) / (std + 1e-8)).to(dtype)


class Attention(nn.Module):
    """Global multi-head self-attention; qkv is laid out head by head, [q | k | v] inside each head."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = FullyConnectedLayer(width, 3 * width)
        self.c_proj = FullyConnectedLayer(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.c_qkv(x).view(b, n, self.heads, -1).transpose(1, 2)  # [B, H, N, 3 C / H]
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C / H)) v
        return self.c_proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, width: int, ratio: int) -> None:
        super().__init__()
        self.c_fc = FullyConnectedLayer(width, ratio * width)
        self.c_proj = FullyConnectedLayer(ratio * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)), gain=math.sqrt(2.0))  # GELU times sqrt(2)


class Block(nn.Module):
    """x + Attn(AdaNorm(x, w)) * LS1(w), then x + MLP(AdaNorm(x, w)) * LS2(w).

    The layer scales start at exactly zero (weight and bias 0), so a fresh block is the identity.
    """

    def __init__(self, width: int, w_dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.mlp = MLP(width, mlp_ratio)
        self.ln_1 = AdaptiveNorm(width, w_dim)
        self.ln_2 = AdaptiveNorm(width, w_dim)
        self.ls_1 = FullyConnectedLayer(w_dim, width, weight_init=0.0, bias_init=0.0)
        self.ls_2 = FullyConnectedLayer(w_dim, width, weight_init=0.0, bias_init=0.0)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = torch.addcmul(x, self.attn(self.ln_1(x, w)), self.ls_1(w))
        return torch.addcmul(x, self.mlp(self.ln_2(x, w)), self.ls_2(w))


class Transformer(nn.Module):
    """tokens [B, N, C], ws [B, num_ws, w_dim] -> one output per level, each [B, N, C]."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()

        def blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList(Block(cfg.width, cfg.w_dim, cfg.heads, cfg.mlp_ratio) for _ in range(count))

        # v1 registered the further blocks first; the order only shows in the state_dict.
        if cfg.revision == "v1":
            self.resblocks = blocks(cfg.num_levels - 1)
            self.first_layers = blocks(cfg.first_blocks)
        else:
            self.first_layers = blocks(cfg.first_blocks)
            self.resblocks = blocks(cfg.num_levels - 1)

    def forward(self, x: Tensor, ws: Tensor) -> list[Tensor]:
        def w_of(j: int) -> Tensor:  # v1: one shared w; v2: row j
            return ws[:, j : j + 1] if ws.shape[1] > 1 else ws[:, :1]

        for j, block in enumerate(self.first_layers):
            x = block(x, w_of(j))
        outputs = [x]
        for j, block in enumerate(self.resblocks, start=len(self.first_layers)):
            x = block(x, w_of(j))
            outputs.append(x)
        return outputs


# ------------------------------------------------------------------ hierarchy
class Upsampler(nn.Module):
    """tokens [B, N, C] -> features [B, N * r, F]: each token's r children are consecutive.

    (lrelu(FC(x)) split into r children + FC(x) repeated over them) / sqrt(2); the
    residual FC is the identity where F = C (level 0).
    """

    def __init__(self, width: int, features: int, ratio: int) -> None:
        super().__init__()
        self.features, self.ratio = features, ratio
        self.subpixel = FullyConnectedLayer(width, features * ratio, activation="lrelu")
        self.res_fc = FullyConnectedLayer(width, features) if features != width else None

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        half = 1 / math.sqrt(2.0)  # folded into the layers' gains
        children = self.subpixel(x, scale=half).view(b, n, self.ratio, self.features)
        residual = x * half if self.res_fc is None else self.res_fc(x, scale=half)
        return children.add_(residual.unsqueeze(2)).view(b, n * self.ratio, self.features)


def make_heads(widths: tuple[int, ...]) -> nn.ModuleDict:
    """One linear head per field and level: ``heads[field][level]``, F_level -> field width."""
    return nn.ModuleDict(
        {
            name: nn.ModuleList(
                FullyConnectedLayer(f, HEADS[name][0], weight_init=HEADS[name][1], bias_init=HEADS[name][2])
                for f in widths
            )
            for name in FIELDS
        }
    )


def run_heads(features: Tensor, level: int, *head_sets: nn.ModuleDict) -> list[Tensor]:
    """Every head of ``level`` in each set, as one matrix product: features [B, P, F] -> packed [B, P, 14] per set.

    The heads are tiny (1 to 4 outputs); one product with their weights stacked is
    several times faster than a product per head on the 10^5 points of a fine level.
    """
    layers = [heads[name][level] for heads in head_sets for name in FIELDS]
    weight = torch.cat([layer.weight * layer.weight_gain for layer in layers])
    bias = torch.cat([layer.bias * layer.bias_gain for layer in layers])
    out = torch.addmm(bias, features.reshape(-1, features.shape[-1]), weight.t())
    return list(out.view(*features.shape[:-1], -1).split(PACKED, dim=-1))


def unpack(packed: Tensor) -> dict[str, Tensor]:
    """Views of the fields of a packed [..., 14] tensor (xyz, scale, rotation, color, opacity)."""
    return dict(zip(FIELDS, packed.split([HEADS[name][0] for name in FIELDS], dim=-1), strict=True))


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] of quaternions (w, x, y, z) [..., 4] normalised as q / (|q| + 0.001)."""
    return rotation_matrices(q / (q.norm(dim=-1, keepdim=True) + QUAT_EPS))


@dataclass
class Parents:
    """A level's anchors as parents of the next level's points, with what their children need."""

    packed: Tensor  # [B, P, 14] the anchors' fields side by side
    box: Tensor  # [B, P, 3, 3] R(q) diag(exp(s)): maps a child's offset in (-1, 1)^3 into the parent's box
    base_scale: Tensor  # [B, P, 3] the children's log-scale ceiling (shrunk where the parent splits)
    split: Tensor  # [B, P] bool: the parent is larger than min_scale

    @classmethod
    def of(cls, packed: Tensor, min_scale: float, log_split_ratio: float) -> Parents:
        anchors = unpack(packed)
        s = anchors["scale"]
        sizes = torch.exp(s)
        split = sizes.amax(dim=-1) > min_scale
        shrunk = (s - log_split_ratio).clamp(-100.0, 0.0)
        base = torch.where(split.unsqueeze(-1), shrunk, s)
        box = quaternion_to_matrix(anchors["rotation"]) * sizes.unsqueeze(-2)
        return cls(packed, box, base, split)


def children(raw: Tensor, parents: Parents) -> Tensor:
    """Child rule, every field relative to its parent: raw heads [B, P * r, 14] -> packed fields [B, P * r, 14].

    Works on the packed channels so that the residual fields take one broadcast add and
    one bounded activation, not one per field: these are the hot elementwise passes.
    """
    b, p = parents.split.shape
    raw = raw.unflatten(1, (p, -1))  # [B, P, r, 14]: the r children of a parent are consecutive
    parent = parents.packed.unsqueeze(2)  # [B, P, 1, 14]
    xyz = parent[..., :3] + torch.einsum("bpij,bprj->bpri", parents.box, torch.tanh(raw[..., :3]))
    scale = parents.base_scale.unsqueeze(2) - F.softplus(-raw[..., 3:6])
    residual = raw[..., 6:] + parent[..., 6:]  # rotation, colour, opacity
    return torch.cat([xyz, soft_bound(torch.cat([scale, residual], dim=-1))], dim=-1).flatten(1, 2)


class PointGenerator(nn.Module):
    """tokens and ws -> the hierarchy: per level, transformer output, features, anchors and Gaussians."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Constants live in buffers, as in the official module (they are in its state_dicts).
        self.register_buffer("scale_init", torch.full((3,), cfg.scale_init))  # unused by the computation
        self.register_buffer("scale_threshold", torch.full((3,), cfg.scale_init))
        self.register_buffer("rotation_init", torch.tensor([1, 0, 0, 0]))
        self.register_buffer("color_init", torch.zeros(3))
        self.register_buffer("opacity_init", torch.full((1,), ROOT_OPACITY))
        self.conv_in = PositionalEncoding(cfg.pe_dim, cfg.pe_res)
        self.transformer = Transformer(cfg)
        widths, ratios = cfg.feature_widths, cfg.cumulative_ratios
        self.upsample_layers = nn.ModuleList(Upsampler(cfg.width, f, r) for f, r in zip(widths, ratios, strict=True))
        self.anchors = make_heads(widths)  # the last level's anchor heads are never used (official layout)
        self.gaussians = make_heads(widths)

    def first_anchors(self, raw: Tensor) -> Tensor:
        """Level-0 anchors (packed) from the virtual root: log-scale -5, the init rotation, colour and opacity."""
        h = unpack(raw)
        thr = self.scale_threshold
        s = thr - F.softplus(thr - (ROOT_LOG_SCALE + h["scale"]))  # smooth upper clamp at thr
        rotation = h["rotation"] + self.rotation_init.to(raw.dtype)
        rest = torch.cat([s, rotation, h["color"] + self.color_init, h["opacity"] + self.opacity_init], dim=-1)
        return torch.cat([FIRST_XYZ_GAIN * h["xyz"], soft_bound(rest)], dim=-1)

    def forward(self, points: Tensor, ws: Tensor) -> Hierarchy:
        """points [B, N, 3] in (-1, 1), ws [B, num_ws, w_dim]."""
        cfg = self.cfg
        log_split = math.log(cfg.split_ratio)
        levels = Hierarchy(tokens=self.transformer(self.conv_in(points), ws))
        parents = None  # the previous level's anchors
        for i, upsample in enumerate(self.upsample_layers):
            features = upsample(levels.tokens[i])
            levels.features.append(features)
            if i < cfg.num_levels - 1:
                raw, raw_gaussians = run_heads(features, i, self.anchors, self.gaussians)
                anchors = self.first_anchors(raw) if i == 0 else children(raw, parents)
                next_parents = Parents.of(anchors, cfg.min_scale, log_split)
                levels.anchors.append(unpack(anchors))
                levels.anchor_splits.append(next_parents.split)
                if i == 0:  # level-0 Gaussians hang one by one under the level-0 anchors
                    parents = next_parents
            else:  # the last level's anchor heads are never used
                (raw_gaussians,) = run_heads(features, i, self.gaussians)
            gaussians = unpack(children(raw_gaussians, parents))
            gaussians["xyz"] = gaussians["xyz"].clamp(-XYZ_BOUND, XYZ_BOUND)
            levels.gaussians.append(gaussians)
            if i < cfg.num_levels - 1:
                parents = next_parents
        return levels


@dataclass
class Hierarchy:
    """Everything one synthesis pass computes, level by level (level 0 first)."""

    tokens: list[Tensor]  # transformer outputs [B, N, C]
    features: list[Tensor] = field(default_factory=list)  # upsampled features [B, P_l, F_l]
    anchors: list[dict[str, Tensor]] = field(default_factory=list)  # levels 0 .. n-2, [B, P_l, k], not clamped
    anchor_splits: list[Tensor] = field(default_factory=list)  # [B, P_l] bool: anchor larger than min_scale
    gaussians: list[dict[str, Tensor]] = field(default_factory=list)  # levels 0 .. n-1, [B, P_l, k], xyz clamped

    def scene(self) -> GaussianScene:
        """All levels' Gaussians concatenated, level 0 first."""
        cat = {k: torch.cat([g[k] for g in self.gaussians], dim=1) for k in FIELDS}
        return GaussianScene(cat["xyz"], cat["scale"], cat["rotation"], cat["opacity"], cat["color"])


# ------------------------------------------------------------------ generator
class CGSGenerator(nn.Module):
    """z [B, z_dim] -> (GaussianScene [B, N, .], level-0 anchor positions [B, num_points, 3]).

    No camera enters: ``mapping`` replaces any label by zeros, and rendering is the
    caller's (``cgsgan.render``).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        points = torch.randn(cfg.num_points, 3)
        points = points / points.square().mean(dim=1, keepdim=True).sqrt() * 0.3  # a sphere of radius ~0.52
        self._xyz = nn.Parameter(points)
        # Registered by the official training loop, kept for state_dict compatibility; unused.
        self.register_buffer("dataset_label_std", torch.zeros(cfg.c_dim))
        self.point_gen = PointGenerator(cfg)
        self.mapping_network = MappingNetwork(
            cfg.z_dim,
            cfg.c_dim,
            cfg.w_dim,
            cfg.num_ws,
            num_layers=cfg.mapping_layers,
            lr_multiplier=cfg.mapping_lr_multiplier,
            w_avg_beta=cfg.w_avg_beta,
        )

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def mapping(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z [B, z_dim] -> ws [B, num_ws, w_dim]. ``c`` is accepted for API compatibility and ignored."""
        if z.dim() != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z must have shape [B, {self.cfg.z_dim}], got {list(z.shape)}")
        zeros = torch.zeros(z.shape[0], self.cfg.c_dim, device=z.device)
        return self.mapping_network(
            z, zeros, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )

    def _check_ws(self, ws: Tensor) -> Tensor:
        if ws.dim() == 2:  # one w for every block
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        if ws.dim() != 3 or ws.shape[2] != self.cfg.w_dim or ws.shape[1] not in (1, self.num_ws):
            raise ValueError(
                f"ws must have shape [B, {self.num_ws}, {self.cfg.w_dim}] or [B, w_dim], got {list(ws.shape)}"
            )
        return ws

    def levels(self, ws: Tensor) -> Hierarchy:
        """The whole hierarchy for ws [B, num_ws, w_dim] or [B, w_dim] (for inspection and tests)."""
        ws = self._check_ws(ws)
        points = torch.tanh(self._xyz).unsqueeze(0).expand(ws.shape[0], -1, -1)
        return self.point_gen(points, ws)

    def synthesis(self, ws: Tensor) -> tuple[GaussianScene, Tensor]:
        """ws -> (scene of all levels' Gaussians, level-0 anchor positions [B, num_points, 3])."""
        levels = self.levels(ws)
        return levels.scene(), levels.anchors[0]["xyz"]

    def forward(
        self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> tuple[GaussianScene, Tensor]:
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff))


def build_generator(cfg: GeneratorConfig, seed: int = 0) -> CGSGenerator:
    """A freshly initialised generator; the seed fixes the initial weights without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CGSGenerator(cfg)
