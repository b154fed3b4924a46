"""cgsgan.synthetic.demo_head: the demo head preset."""

from __future__ import annotations

import math

import pytest
import torch

from cgsgan.camera import DEFAULT_FOCAL, look_at
from cgsgan.gaussians import GaussianScene
from cgsgan.render import render
from cgsgan.synthetic import HEAD_SCALE as S
from cgsgan.synthetic import demo_head

FRONTAL = (math.pi / 2, math.pi / 2)
SMALL = 2000  # enough Gaussians for the structural tests, fast to build


@pytest.fixture(scope="module")
def head() -> GaussianScene:
    """The default demo head (seed 0, 20000 Gaussians)."""
    return demo_head()


@pytest.fixture(scope="module")
def small() -> GaussianScene:
    return demo_head(seed=0, count=SMALL)


def test_shape_dtype_device(small):
    assert isinstance(small, GaussianScene)
    assert small.batch_size == 1
    assert small.num_gaussians == SMALL
    assert small.dtype == torch.float32
    assert small.device.type == "cpu"


@pytest.mark.parametrize("count", [1000, 2501, 20000])
def test_count_respected(count, head):
    scene = head if count == 20000 else demo_head(seed=3, count=count)
    assert scene.num_gaussians == count


def test_deterministic_for_a_seed(small):
    again = demo_head(seed=0, count=SMALL)
    for name, value in small.tensors().items():
        assert torch.equal(value, again.tensors()[name]), name


def test_different_seeds_differ(small):
    other = demo_head(seed=1, count=SMALL)
    assert not torch.equal(small.xyz, other.xyz)
    # The look changes, not only the sample positions: mean colours differ.
    assert (small.rgb().mean(1) - other.rgb().mean(1)).abs().max() > 0.02


def test_fields_finite_and_activations_sane(head):
    for name, value in head.tensors().items():
        assert torch.isfinite(value).all(), name
    rgb = head.rgb()
    assert (rgb >= 0).all() and (rgb <= 1 + 1e-5).all()
    assert (head.opacities() > 0.9).all()  # an opaque surface
    scales = head.scales()
    assert (scales > 0).all() and scales.max() < 0.02 * S
    # Flat discs: the smallest axis is well below the largest.
    assert (scales.amin(-1) < 0.5 * scales.amax(-1)).all()


def test_inside_unit_cube(head):
    xyz = head.xyz[0]
    assert xyz.abs().max() <= 0.5
    reach = xyz.abs() + 3 * head.scales()[0].amax(-1, keepdim=True)
    assert reach.max() < 0.5
    # Proportions of the model (about 0.22 wide, neck down to y = -0.3), framed by the builder's scale.
    assert 0.2 * S < xyz[:, 0].max() - xyz[:, 0].min() < 0.28 * S
    assert xyz[:, 1].min() == pytest.approx(-0.3 * S, abs=0.005)
    assert 0.17 * S < xyz[:, 1].max() < 0.23 * S


def test_frontal_render_opaque_centre_white_corners(head):
    out = render(head, look_at(*FRONTAL), 64, background=1.0)
    alpha, image = out.alpha[0, 0], out.image[0]
    assert alpha[32, 32] > 0.9
    assert alpha[28:36, 28:36].mean() > 0.95  # no holes in the face
    for row, col in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert alpha[row, col] < 0.01
        assert torch.allclose(image[:, row, col], torch.ones(3), atol=0.01)


def world(*point: float) -> tuple[float, ...]:
    """A point given in the heads' model units, in world units (the builder scales its scenes)."""
    return tuple(S * c for c in point)


def _pixel(point: tuple[float, float, float], radius: float, size: int) -> tuple[int, int]:
    """(row, col) of a world point in a frontal view from ``radius`` (y up -> rows down)."""
    x, y, z = point
    scale = DEFAULT_FOCAL * size / (radius - z)
    return round(-scale * y + (size - 1) / 2), round(scale * x + (size - 1) / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_face_has_eyes_and_mouth(seed, head):
    """Close-up frontal render: dark irises/pupils in the eyes, red lips, plain skin on the cheek."""
    scene = head if seed == 0 else demo_head(seed=seed)
    radius, size = 1.3, 96
    image = render(scene, look_at(*FRONTAL, radius=radius), size, background=1.0).image[0]
    luminance = image.mean(0)
    redness = image[0] - (image[1] + image[2]) / 2

    def window(point, half):
        row, col = _pixel(point, radius, size)
        return slice(row - half, row + half + 1), slice(col - half, col + half + 1)

    cheek = window(world(0.05, -0.02, 0.1), 2)
    skin_luminance, skin_redness = luminance[cheek].mean(), redness[cheek].mean()
    for eye_x in (0.045, -0.045):
        eye = window(world(eye_x, 0.05, 0.11), 3)
        assert luminance[eye].min() < 0.5 * skin_luminance  # iris / pupil
        assert luminance[eye].max() > skin_luminance + 0.1  # white sclera
    mouth = window(world(0.0, -0.056, 0.12), 2)
    assert redness[mouth].mean() > skin_redness + 0.05


@pytest.mark.parametrize("count", [999, 0, -5, 1500.0, "2000", None, True])
def test_bad_count_raises(count):
    with pytest.raises(ValueError, match="count"):
        demo_head(count=count)


def test_bad_seed_raises():
    with pytest.raises(ValueError, match="seed"):
        demo_head(seed=1.5)
