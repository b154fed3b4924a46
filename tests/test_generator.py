import json
import math

import numpy as np
import pytest
import torch
from conformance import (
    DATA,
    assert_close,
    assert_sum_close,
    fill_rule_a,
    fill_rule_c,
    key_normal,
    load_keys,
    load_vectors,
)
from torch.nn import functional as F

from cgsgan.config import PRESETS, GeneratorConfig, generator_config
from cgsgan.models import build_generator
from cgsgan.models.generator import Attention, ConstantEncoding, quaternion_to_matrix
from cgsgan.nn import FullyConnectedLayer, MappingNetwork

FIELDS = {"xyz": "xyz", "scale": "scaling", "rotation": "rotation", "opacity": "opacity", "color": "features_dc"}
ANCHOR_FIELDS = ("xyz", "scale", "rotation", "color", "opacity")
RUNS = (("p10_", 1.0), ("p07_", 0.7))


def official(revision: str, resolution: int, rule: str = "A"):
    G = build_generator(generator_config(f"ffhqc{resolution}", revision=revision))
    state = G.state_dict()
    if rule == "A":
        filled = fill_rule_a(state)
    else:
        filled = fill_rule_c(state, {name for name, _ in G.named_parameters()})
    G.load_state_dict(filled)
    return G.eval()


# ------------------------------------------------------------ conformance
def test_fill_rule_reproduces_the_published_spot_values():
    entries = json.loads((DATA / "fill_check.json").read_text())["entries"]
    for e in entries:
        value = key_normal(e["key"], tuple(e["shape"])).astype(np.float32)
        np.testing.assert_allclose(value.reshape(-1)[:6], e["first_values"], rtol=0, atol=0)
        assert value.astype(np.float64).sum() == pytest.approx(e["sum_f64"], rel=1e-12)


@pytest.mark.parametrize("revision", ["v1", "v2"])
@pytest.mark.parametrize("resolution", [256, 512, 1024, 2048])
def test_state_dict_has_the_official_keys_shapes_and_order(revision, resolution):
    keys = load_keys(f"keys_G_{revision}_{resolution}")
    G = build_generator(generator_config(f"ffhqc{resolution}", revision=revision))
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in G.state_dict().items()]
    assert ours == keys["state_dict"]
    assert sum(p.numel() for p in G.parameters()) == keys["n_parameters_total"]
    assert G.cfg.num_gaussians == keys["gaussians_per_sample"]
    assert G.cfg.num_anchors == keys["anchors_per_sample"]
    assert G.num_ws == keys["num_ws"]


CASES = [
    ("v1", 256, "A", "G_v1_256"),
    ("v2", 256, "A", "G_v2_256"),
    ("v2", 256, "C", "G_v2_256_ruleC"),
    ("v1", 512, "A", "G_v1_512"),
    ("v2", 512, "A", "G_v2_512"),
    ("v1", 1024, "A", "G_v1_1024_lite"),
    ("v2", 1024, "A", "G_v2_1024_lite"),
    ("v1", 2048, "A", "G_v1_2048_lite"),
    ("v2", 2048, "A", "G_v2_2048_lite"),
]


@pytest.mark.parametrize(("revision", "resolution", "rule", "stem"), CASES, ids=[c[3] for c in CASES])
def test_reproduces_the_official_outputs(revision, resolution, rule, stem):
    G = official(revision, resolution, rule)
    ref = load_vectors(stem)
    stride = int(ref["row_stride"])
    every = 101 if stem.endswith("lite") else 37
    z = torch.from_numpy(ref["z"])
    if "pe_tokens_ch8" in ref:
        points = torch.tanh(G._xyz).expand(2, -1, -1)
        assert_close("pe tokens", G.point_gen.conv_in(points)[:, ::stride, ::8], ref["pe_tokens_ch8"])
    for prefix, psi in RUNS:
        with torch.no_grad():
            ws = G.mapping(z, truncation_psi=psi)
            levels = G.levels(ws)
        r = {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}
        assert_close(f"{prefix}ws", ws, r["ws"])
        if "transformer_out_tok4_ch8" in r:
            tokens = torch.stack([t[:, :: 4 * stride, ::8] for t in levels.tokens])
            assert_close(f"{prefix}tokens", tokens, r["transformer_out_tok4_ch8"])
            for i, features in enumerate(levels.features):
                assert_close(f"{prefix}features {i}", features[:, :: 37 * stride, ::4], r[f"upsampled_l{i}_pt37_ch4"])
        assert_close(f"{prefix}anchors 0", levels.anchors[0]["xyz"], r["anchor_xyz_level0"])

        # The split test decides each child's scale branch: compare it exactly first.
        flags = torch.cat(levels.anchor_splits, dim=1).numpy()
        np.testing.assert_array_equal(np.packbits(flags, axis=-1), r["anchor_split_flags_packbits"])
        counts = np.array([s.sum(dim=1).numpy() for s in levels.anchor_splits])
        np.testing.assert_array_equal(counts, r["anchor_split_count_per_level"])

        for name in ANCHOR_FIELDS:
            anchors = torch.cat([a[name] for a in levels.anchors], dim=1)
            abssum = r[f"anchor_{name}_abssum"]
            assert_sum_close(f"{prefix}anchor {name}", anchors.double().sum(1), r[f"anchor_{name}_sum"], abssum)
            level_sums = torch.stack([a[name].double().sum(1) for a in levels.anchors])
            assert_sum_close(f"{prefix}anchor {name} levels", level_sums, r[f"anchor_{name}_level_sum"], abssum)
            if f"anchor_{name}_every37" in r:
                assert_close(f"{prefix}anchor {name}", anchors[:, :: 37 * stride], r[f"anchor_{name}_every37"])

        scene = levels.scene()
        for ours, theirs in FIELDS.items():
            value = getattr(scene, ours)
            assert_close(f"{prefix}{theirs}", value[:, :: every * stride], r[f"gauss_{theirs}_every{every}"])
            assert_sum_close(
                f"{prefix}{theirs}", value.double().sum(1), r[f"gauss_{theirs}_sum"], r[f"gauss_{theirs}_abssum"]
            )
            level_sums = torch.stack([g[ours].double().sum(1) for g in levels.gaussians])
            level_abs = r[f"gauss_{theirs}_level_abssum"]
            assert_sum_close(f"{prefix}{theirs} levels", level_sums, r[f"gauss_{theirs}_level_sum"], level_abs)
            if f"gauss_{theirs}_level0_all" in r:
                assert_close(
                    f"{prefix}{theirs} level 0", levels.gaussians[0][ours][:, ::stride], r[f"gauss_{theirs}_level0_all"]
                )


# ------------------------------------------------------------ layers
def test_fully_connected_layer_equalised_lr_on_any_leading_dims():
    torch.manual_seed(0)
    fc = FullyConnectedLayer(6, 4, activation="lrelu", lr_multiplier=0.01, weight_init=2.0, bias_init=0.5)
    # Stored at 1/lr scale, used at lr/sqrt(fan_in) scale: runtime weight ~ N(0, 4 / 6), bias exactly 0.5.
    assert torch.allclose(fc.bias * 0.01, torch.full((4,), 0.5))
    x = torch.randn(2, 3, 5, 6)
    manual = F.leaky_relu(x @ (fc.weight * 0.01 / math.sqrt(6)).T + 0.5, 0.2) * math.sqrt(2)
    assert torch.allclose(fc(x), manual, atol=1e-6)
    assert fc(x).shape == (2, 3, 5, 4)
    with pytest.raises(ValueError, match="activation"):
        FullyConnectedLayer(2, 2, activation="relu")


def test_attention_equals_the_plain_head_interleaved_formula():
    torch.manual_seed(1)
    attn = Attention(width=48, heads=4)
    x = torch.randn(2, 10, 48)
    qkv = attn.c_qkv(x).view(2, 10, 4, 36)  # each head's 36 channels are [q | k | v]
    q, k, v = qkv.split(12, dim=-1)
    scale = 12**-0.25
    weight = torch.softmax(torch.einsum("bthc,bshc->bhts", q * scale, k * scale), dim=-1)
    plain = attn.c_proj(torch.einsum("bhts,bshc->bthc", weight, v).reshape(2, 10, 48))
    assert torch.allclose(attn(x), plain, atol=1e-6)


def test_constant_encoding_closed_form_equals_the_official_grid_sample():
    torch.manual_seed(2)
    enc = ConstantEncoding(pe_dim=16, pe_res=32)
    points = torch.rand(2, 50, 3) * 2 - 1
    # Official: per axis a grid [B, N, 1, 2] = (x = 0, y = p_axis) into a [1, C, 1, res] line.
    sampled = 0
    for axis in range(3):
        grid = torch.stack([torch.zeros_like(points[..., axis]), points[..., axis]], dim=-1).unsqueeze(2)
        line = enc.const_pe[axis : axis + 1].expand(2, -1, -1, -1)
        sampled = sampled + F.grid_sample(line, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled[..., 0].transpose(1, 2) / math.sqrt(3)
    assert torch.allclose(enc(points), sampled, atol=1e-6)
    # Gradients reach only the middle two columns, as in the official code.
    enc(points).sum().backward()
    touched = enc.const_pe.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten().tolist()
    assert touched == [15, 16]


def test_quaternion_matrix_is_a_rotation_for_unit_quaternions():
    q = F.normalize(torch.randn(100, 4, dtype=torch.float64), dim=-1) * 1000  # |q| >> 0.001
    m = quaternion_to_matrix(q)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    assert torch.allclose(m @ m.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(m), torch.ones(100, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(quaternion_to_matrix(torch.tensor([1e3, 0.0, 0.0, 0.0])), torch.eye(3), atol=1e-5)


# ------------------------------------------------------------ mapping
def test_mapping_tracks_w_avg_and_truncates_toward_it():
    torch.manual_seed(3)
    mapping = MappingNetwork(z_dim=8, c_dim=5, w_dim=8, num_ws=3)
    z = torch.randn(4, 8)
    ws = mapping(z, update_emas=True)
    w = ws[:, 0]
    assert torch.equal(ws, w.unsqueeze(1).expand(-1, 3, -1))
    assert torch.allclose(mapping.w_avg, w.mean(0) * (1 - 0.998), atol=1e-7)
    frozen = mapping.w_avg.clone()
    assert torch.allclose(mapping(z, truncation_psi=0.0), frozen.expand(4, 3, -1))
    assert torch.equal(mapping.w_avg, frozen)  # no update unless asked
    half = mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(half[:, :2], frozen.lerp(w, 0.5).unsqueeze(1).expand(-1, 2, -1), atol=1e-6)
    assert torch.allclose(half[:, 2], w, atol=1e-6)


def test_generator_ignores_the_camera_label():
    G = build_generator(generator_config("tiny64"))
    z = torch.randn(2, G.cfg.z_dim)
    assert torch.equal(G.mapping(z), G.mapping(z, torch.randn(2, 25)))


# ------------------------------------------------------------ presets and behaviour
def test_presets_build_and_count_gaussians():
    assert set(PRESETS) >= {"ffhqc256", "ffhqc512", "ffhqc1024", "ffhqc2048", "tiny64", "small128"}
    expected = {"ffhqc256": 109_056, "ffhqc512": 240_128, "ffhqc1024": 502_272, "ffhqc2048": 1_026_560}
    for name, count in expected.items():
        assert PRESETS[name].generator.num_gaussians == count
    assert generator_config("ffhqc512").split_ratio == pytest.approx(1.8661, abs=1e-4)
    assert generator_config("ffhqc2048", revision="v1").feature_widths[7] == 16
    assert generator_config("ffhqc2048", revision="v2").feature_widths[7] == 8


@pytest.mark.parametrize("preset", ["tiny64", "small128"])
def test_cpu_presets_synthesise_scenes_and_anchors(preset):
    G = build_generator(generator_config(preset), seed=1)
    z = torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    scene, anchors = G(z)
    assert scene.xyz.shape == (2, G.cfg.num_gaussians, 3)
    assert anchors.shape == (2, G.cfg.num_points, 3)
    assert scene.xyz.abs().max() <= 0.5
    assert all(torch.isfinite(t).all() for t in (scene.xyz, scene.scale, scene.rotation, scene.opacity, scene.color))


def test_fresh_transformer_is_the_identity_so_z_matters_only_once_trained():
    G = build_generator(generator_config("tiny64"))
    z = torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        levels = G.levels(G.mapping(z))
        tokens = G.point_gen.conv_in(torch.tanh(G._xyz).expand(2, -1, -1))
    for out in levels.tokens:  # layer scales start at zero
        assert torch.equal(out, tokens)
    assert torch.equal(levels.scene().xyz[0], levels.scene().xyz[1])  # as in the official code
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".ls_" in name:
                p.normal_(0, 0.1)
        scene, _ = G(z)
    assert not torch.allclose(scene.xyz[0], scene.xyz[1])


def test_every_live_parameter_gets_a_gradient():
    G = build_generator(generator_config("tiny64", revision="v2"))
    with torch.no_grad():  # make the layer scales non-zero so every branch is live
        for name, p in G.named_parameters():
            if ".ls_" in name:
                p.normal_(0, 0.1)
    scene, anchors = G(torch.randn(2, G.cfg.z_dim))
    loss = sum(t.square().mean() for t in (scene.xyz, scene.scale, scene.rotation, scene.opacity, scene.color))
    (loss + anchors.square().mean()).backward()
    last = G.cfg.num_levels - 1
    dead = {"mapping_network.embed.weight"} | {
        f"point_gen.anchors.{f}.{last}.{k}" for f in ANCHOR_FIELDS for k in ("weight", "bias")
    }
    for name, p in G.named_parameters():
        if name in dead:
            assert p.grad is None or not p.grad.any(), name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_seeded_build_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_generator(generator_config("tiny64"), seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_generator(generator_config("tiny64"), seed=5).state_dict()
    c = build_generator(generator_config("tiny64"), seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["_xyz"], c["_xyz"])


def test_v2_accepts_a_single_w_and_v1_shares_it():
    for revision in ("v1", "v2"):
        G = build_generator(generator_config("tiny64", revision=revision))
        ws = G.mapping(torch.randn(1, G.cfg.z_dim))
        assert ws.shape == (1, G.num_ws, G.cfg.w_dim)
        with torch.no_grad():
            assert torch.equal(G.synthesis(ws)[0].xyz, G.synthesis(ws[:, 0])[0].xyz)


def test_bad_inputs_are_named():
    G = build_generator(generator_config("tiny64"))
    with pytest.raises(ValueError, match="z must have shape"):
        G.mapping(torch.randn(2, 3))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="unknown preset"):
        generator_config("ffhq9")
    with pytest.raises(ValueError, match="revision"):
        GeneratorConfig(revision="v3")
    with pytest.raises(ValueError, match="resolution"):
        GeneratorConfig(resolution=300)
    with pytest.raises(ValueError, match="unknown generator config keys: colour"):
        GeneratorConfig.from_dict({"colour": 1})


def test_config_round_trips_through_a_dict():
    cfg = generator_config("small128", revision="v1")
    assert GeneratorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
