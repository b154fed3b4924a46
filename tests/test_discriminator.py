import math

import numpy as np
import pytest
import torch
from conformance import assert_close, fill_rule_a, fill_rule_c, load_keys, load_vectors
from torch.nn import functional as F

from cgsgan.models.discriminator import Discriminator, DiscriminatorConfig, minibatch_std
from cgsgan.nn import Conv2dLayer
from cgsgan.nn.resample import filter2d, setup_filter


def official_state(resolution: int, rule: str) -> dict[str, torch.Tensor]:
    """An official-layout D state dict (b8_pose included) filled by the conformance rules."""
    entries = load_keys(f"keys_D_{resolution}")["state_dict"]
    zeros = {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, shape, dtype in entries}
    if rule == "A":
        return fill_rule_a(zeros)
    constructed = {k: setup_filter() if k.endswith("resample_filter") else v for k, v in zeros.items()}
    return fill_rule_c(constructed, {k for k in zeros if not k.endswith("resample_filter")})


@pytest.mark.parametrize("resolution", [256, 512])
def test_state_dict_is_the_official_one_without_the_dead_block(resolution):
    keys = load_keys(f"keys_D_{resolution}")
    D = Discriminator(DiscriminatorConfig(resolution=resolution))
    official = [e for e in keys["state_dict"] if not e[0].startswith("b8_pose.")]
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in D.state_dict().items()] == official
    dead = keys["parameters_by_group"]["b8_pose"]
    assert sum(p.numel() for p in D.parameters()) == keys["n_parameters_total"] - dead


@pytest.mark.parametrize("rule", ["A", "C"])
def test_reproduces_the_official_logits(rule):
    D = Discriminator(DiscriminatorConfig(resolution=256)).eval()
    D.load_state_dict(official_state(256, rule))  # the b8_pose weights are accepted and ignored
    ref = load_vectors("D_256" if rule == "A" else "D_256_ruleC")
    images = torch.from_numpy((np.random.default_rng(1).standard_normal((4, 3, 256, 256)) * 0.5).astype(np.float32))
    labels = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 25)).astype(np.float32))
    np.testing.assert_allclose(images.double().sum((1, 2, 3)).numpy(), ref["images_sum"], rtol=1e-10)
    with torch.no_grad():
        x = None
        for res, block in zip(D.cfg.block_resolutions, D.blocks(), strict=True):
            x = block(x, images)
            assert_close(f"block {res}", x[:, 0, :4, :4], ref[f"block{res}_out_ch0_4x4"])
            diff = np.abs(x.double().sum((1, 2, 3)).numpy() - ref[f"block{res}_out_sum"])
            assert (diff <= 2e-5 * ref[f"block{res}_out_abssum"]).all(), res
        cmap = D.mapping(None, labels)
        assert_close("cmap", cmap, ref["cmap"])
        assert_close("epilogue conv", D.b4.conv(minibatch_std(x, 4, 1)), ref["epilogue_conv_out"])
        logits = D.b4(x, cmap)  # what forward computes, without running the blocks twice
    assert_close("logits", logits, ref["logits"], atol=1e-6, rtol=1e-5)


def test_downsampling_filter_is_applied_as_a_convolution():
    f = torch.arange(16, dtype=torch.float32).reshape(4, 4)  # asymmetric: the flip shows
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1
    y = filter2d(x, f, (2, 1, 2, 1))
    assert y.shape == (1, 1, 8, 8)
    assert torch.equal(y[0, 0, 2:6, 2:6], f)  # an impulse returns the kernel unflipped: true convolution
    assert torch.allclose(setup_filter().sum(), torch.tensor(1.0))
    assert torch.allclose(setup_filter()[0], torch.tensor([1, 3, 3, 1]) / 64)


def test_conv_layer_down_sampling_shapes_gains_and_clamp():
    torch.manual_seed(0)
    layer = Conv2dLayer(4, 6, 3, activation="lrelu", down=2, conv_clamp=0.5)
    x = torch.randn(2, 4, 16, 16)
    y = layer(x)
    assert y.shape == (2, 6, 8, 8) and y.abs().max() <= 0.5
    plain = Conv2dLayer(4, 6, 3)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items()})
    expected = F.conv2d(x, plain.weight / math.sqrt(4 * 9), plain.bias, padding=1)
    assert torch.allclose(plain(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="down"):
        Conv2dLayer(1, 1, 3, down=4)


def test_minibatch_std_groups_samples():
    x = torch.randn(8, 4, 4, 4)
    y = minibatch_std(x, 4, 1)
    assert y.shape == (8, 5, 4, 4)
    group = x.reshape(4, 2, 4, 4, 4)  # sample i is in group i % 2
    expected = group.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=[1, 2, 3])
    assert torch.allclose(y[:, 4, 0, 0], expected.repeat(4), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the minibatch-std group size"):
        minibatch_std(torch.randn(6, 4, 4, 4), 4, 1)


def test_gradients_reach_every_parameter_and_the_image():
    D = Discriminator(DiscriminatorConfig(resolution=32))
    images = torch.randn(4, 3, 32, 32, requires_grad=True)
    D(images, torch.randn(4, 25)).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    for name, p in D.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_inputs_are_named():
    D = Discriminator(DiscriminatorConfig(resolution=32))
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 32, 32\]"):
        D(torch.randn(4, 3, 64, 64), torch.randn(4, 25))
    with pytest.raises(ValueError, match=r"labels must have shape \[4, 25\]"):
        D(torch.randn(4, 3, 32, 32), torch.randn(4, 16))
    with pytest.raises(ValueError, match="resolution"):
        DiscriminatorConfig(resolution=100)


@pytest.mark.parametrize("padding, down, size", [((2, 1, 2, 1), 2, 8), ((1, 1, 1, 1), 1, 9), ((2, 2, 2, 2), 2, 9)])
def test_filter_gradients_are_its_adjoint_to_second_order(padding, down, size):
    """filter2d writes its own backward (for a fast R1 double backward): check it against autograd's."""
    f = setup_filter()
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight = f.flip([0, 1]).double()[None, None].expand(3, 1, -1, -1)
    expected = F.conv2d(F.pad(x, list(padding)), weight, groups=3)[:, :, ::down, ::down]
    torch.testing.assert_close(filter2d(x, f, padding, down), expected, rtol=0, atol=1e-14)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: filter2d(t, f, padding, down), (x,))
    assert torch.autograd.gradgradcheck(lambda t: filter2d(t, f, padding, down), (x,))
