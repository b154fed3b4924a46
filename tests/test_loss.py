import math

import pytest
import torch

from cgsgan.train.loss import (
    blur_images,
    blur_sigma,
    center_loss,
    discriminator_loss,
    generator_loss,
    knn_loss,
    lazy_adam_hyperparameters,
    r1_loss,
    r1_penalty,
    view_labels,
)


def test_adversarial_losses_are_the_logistic_ones():
    logits = torch.tensor([[0.0], [2.0]])
    assert generator_loss(logits).item() == pytest.approx((math.log(2) + math.log1p(math.exp(-2))) / 2)
    real = torch.tensor([[-1.0], [1.0]])
    expected = (math.log(2) + math.log1p(math.exp(2))) / 2 + (math.log1p(math.exp(1)) + math.log1p(math.exp(-1))) / 2
    assert discriminator_loss(logits, real).item() == pytest.approx(expected)


def test_r1_is_the_squared_input_gradient_and_differentiable():
    w = torch.randn(3, 4, 4, requires_grad=True)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = (images * w).sum(dim=[1, 2, 3])[:, None]  # gradient w.r.t. each image is w
    penalty = r1_penalty(logits, images)
    assert torch.allclose(penalty, w.square().sum().expand(2))
    loss = r1_loss(logits, images, gamma=1.0, interval=16)
    assert loss.item() == pytest.approx(w.square().sum().item() * 0.5 * 16, rel=1e-6)
    loss.backward()
    assert torch.allclose(w.grad, 16 * w, atol=1e-5)  # d/dw of 8 |w|^2


def test_lazy_regularisation_adjusts_adam():
    lr, betas = lazy_adam_hyperparameters(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0018824, rel=1e-4) and betas[1] == pytest.approx(0.99059, rel=1e-5)


def test_views_use_the_other_samples_cameras():
    labels = torch.arange(8.0)[:, None].expand(8, 25)
    for v in range(1, 5):
        rolled = view_labels(labels, v)[:, 0]
        assert rolled.tolist() == [float((b - v) % 8) for b in range(8)]
        assert not torch.equal(rolled, labels[:, 0])  # never a scene's own camera for v < B


def test_knn_loss_matches_a_direct_computation():
    torch.manual_seed(0)
    anchors = torch.randn(2, 20, 3)
    k = 5
    expected = 0.0
    for b in range(2):
        for i in range(20):
            d = ((anchors[b] - anchors[b, i]).square().sum(-1)).sort().values[1 : k + 1]
            expected += d.sum().item() / (3 * k)
    assert knn_loss(anchors, k).item() == pytest.approx(expected / 40, rel=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        knn_loss(anchors, 20)


def test_center_loss_is_the_squared_centroid_of_each_sample():
    anchors = torch.randn(3, 10, 3) + torch.tensor([0.3, -0.6, 0.0])
    expected = sum(anchors[b].mean(0).square().sum().item() for b in range(3)) / 9
    assert center_loss(anchors).item() == pytest.approx(expected, rel=1e-6)


def test_center_loss_does_not_cancel_opposite_offsets():
    # Two heads centred at +x and -x: the batch centroid is 0, each head is 0.5 off.
    base = torch.randn(10, 3)
    base = base - base.mean(0)
    anchors = torch.stack([base + torch.tensor([0.5, 0, 0]), base - torch.tensor([0.5, 0, 0])])
    assert center_loss(anchors).item() == pytest.approx(0.25 / 3, rel=1e-5)


def test_blur_fades_and_keeps_the_mean():
    assert blur_sigma(0, 200_000) == 10.0 and blur_sigma(100_000, 200_000) == 5.0 and blur_sigma(300_000, 200_000) == 0
    images = torch.zeros(1, 3, 64, 64)
    images[:, :, 32, 32] = 1.0
    blurred = blur_images(images, 2.0)
    assert blurred.shape == images.shape
    assert blurred.sum().item() == pytest.approx(3.0, rel=1e-5)  # the impulse is far from the borders
    assert blurred[0, 0, 32, 32] < 0.2 and blurred[0, 0, 32, 30] > 0
    taps = torch.exp2(-(torch.arange(-6.0, 7.0) / 2.0).square())
    assert blurred[0, 0, 32, 28].item() == pytest.approx((taps[2] * taps[6] / taps.sum() ** 2).item(), rel=1e-5)
    assert torch.equal(blur_images(images, 0.0), images)
