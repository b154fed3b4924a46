import math

import pytest
import torch

from cgsgan.gaussians import SH_C0, GaussianScene, rgb_to_sh, sh_to_rgb


def scene(batch=2, count=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(*(torch.randn(batch, count, w, generator=g) for w in GaussianScene.WIDTHS.values()))


def test_activations_and_inverse():
    s = scene()
    assert torch.allclose(s.scales(), s.scale.exp())
    assert torch.allclose(s.rotations().norm(dim=-1), torch.ones(2, 5))
    assert torch.allclose(s.opacities(), torch.sigmoid(s.opacity))
    assert torch.allclose(s.rgb(), (0.5 + SH_C0 * s.color).clamp_min(0))
    back = GaussianScene.from_activated(s.xyz, s.scales(), s.rotation, s.opacities(), s.rgb())
    assert torch.allclose(back.scale, s.scale, atol=1e-6)
    assert torch.allclose(back.opacity, s.opacity, atol=1e-4)
    unclamped = s.rgb() > 0
    assert torch.allclose(back.color[unclamped], s.color[unclamped], atol=1e-5)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(torch.tensor([0.2, 0.5, 0.9]))), torch.tensor([0.2, 0.5, 0.9]))


def test_indexing_repeat_and_cat():
    s = scene(batch=3, count=4)
    assert s[1].batch_size == 1 and torch.equal(s[1].xyz, s.xyz[1:2])
    assert torch.equal(s[-1].color, s.color[2:3])
    assert s[0:2].batch_size == 2
    assert torch.equal(s[torch.tensor([2, 0])].opacity, s.opacity[[2, 0]])
    sub = s.subset(torch.tensor([True, False, True, False]))
    assert sub.num_gaussians == 2 and torch.equal(sub.scale, s.scale[:, [0, 2]])
    views = s.repeat_views(2)
    assert views.batch_size == 6 and torch.equal(views.xyz[0], views.xyz[1]) and torch.equal(views.xyz[2], s.xyz[1])
    assert GaussianScene.cat([s, s]).batch_size == 6
    assert GaussianScene.cat([s, s], dim=1).num_gaussians == 8
    assert len(s) == 3 and s.dtype == torch.float32 and s.device.type == "cpu"
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    with pytest.raises(ValueError, match="views"):
        s.repeat_views(0)
    with pytest.raises(ValueError, match="dim"):
        GaussianScene.cat([s], dim=2)
    with pytest.raises(ValueError, match="at least one"):
        GaussianScene.cat([])


def test_map_to_detach_and_grads():
    s = scene().requires_grad_()
    assert all(t.requires_grad for t in s.tensors().values())
    d = s.detach()
    assert not any(t.requires_grad for t in d.tensors().values())
    assert s.to(torch.float64).dtype == torch.float64
    assert s.clone().xyz.data_ptr() != s.xyz.data_ptr()
    assert list(s.tensors()) == ["xyz", "scale", "rotation", "opacity", "color"]


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(rotation=torch.zeros(2, 5, 3)), "rotation must have shape"),
        (dict(scale=torch.zeros(2, 4, 3)), "scale has batch/count"),
        (dict(color=torch.zeros(2, 5, 3, dtype=torch.float64)), "color is torch.float64"),
        (dict(opacity=torch.zeros(2, 5, 1, dtype=torch.int64)), "opacity"),
        (dict(xyz=torch.zeros(5, 3)), "xyz must have shape"),
    ],
)
def test_bad_shapes_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        scene().with_fields(**change)


def test_non_tensor_is_refused():
    s = scene()
    with pytest.raises(TypeError, match="xyz must be a torch.Tensor"):
        GaussianScene(s.xyz.tolist(), s.scale, s.rotation, s.opacity, s.color)


def test_covariances_rotate_the_scaled_axes():
    # log-scales of sigma (0.1, 0.2, 0.3); identity, then a 90 degree turn about z (w = cos 45, z = sin 45).
    half = math.sqrt(0.5)
    scene = GaussianScene(
        xyz=torch.zeros(1, 2, 3),
        scale=torch.tensor([0.1, 0.2, 0.3]).log().expand(1, 2, 3),
        rotation=torch.tensor([[[2.0, 0, 0, 0], [half, 0, 0, half]]]),  # unnormalised on purpose
        opacity=torch.zeros(1, 2, 1),
        color=torch.zeros(1, 2, 3),
    )
    cov = scene.covariances()
    assert cov.shape == (1, 2, 3, 3)
    assert torch.allclose(cov[0, 0], torch.diag(torch.tensor([0.01, 0.04, 0.09])), atol=1e-7)
    assert torch.allclose(cov[0, 1], torch.diag(torch.tensor([0.04, 0.01, 0.09])), atol=1e-7)  # x and y swap
