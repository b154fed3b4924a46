import math

import numpy as np
import pytest
import torch
from reference_rasterizer import render_reference

from cgsgan import GaussianScene
from cgsgan.camera import look_at
from cgsgan.render import render
from cgsgan.render.projection import project
from cgsgan.render.tiles import intersect_tiles

F64 = torch.float64
FRONTAL = dict(yaw=math.pi / 2, pitch=math.pi / 2)


def random_scene(n, seed, dtype=F64, batch=1, spread=0.4, log_scale=(-4.5, -2.8), opacity_shift=1.0):
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        xyz=((torch.rand(batch, n, 3, generator=g) - 0.5) * spread).to(dtype),
        scale=torch.empty(batch, n, 3).uniform_(*log_scale, generator=g).to(dtype),
        rotation=torch.randn(batch, n, 4, generator=g).to(dtype),
        opacity=(torch.randn(batch, n, 1, generator=g) * 2 + opacity_shift).to(dtype),
        color=torch.randn(batch, n, 3, generator=g).to(dtype),
    )


def single(xyz, log_scale, opacity, rgb, dtype=F64):
    """Isotropic Gaussians from lists: xyz [n, 3], log_scale [n], opacity [n], rgb [n, 3]."""
    n = len(xyz)
    return GaussianScene.from_activated(
        xyz=torch.tensor(xyz, dtype=dtype)[None],
        scales=torch.tensor(log_scale, dtype=dtype).exp()[None, :, None].expand(1, n, 3),
        rotations=torch.tensor([[1.0, 0, 0, 0]] * n, dtype=dtype)[None],
        opacities=torch.tensor(opacity, dtype=dtype)[None, :, None],
        rgb=torch.tensor(rgb, dtype=dtype)[None],
    )


def reference(scene, labels, height, width, background):
    fields = [t[0].detach().numpy() for t in scene.tensors().values()]
    return render_reference(*fields, labels[0].numpy(), height, width, np.asarray(background))


# --------------------------------------------------------------- analytic cases
def test_isotropic_gaussian_matches_analytic_profile():
    s, o, rgb, bg = 0.01, 0.8, [0.9, 0.2, 0.4], [0.1, 0.3, 0.5]
    scene = single([[0.0, 0.0, 0.0]], [math.log(s)], [o], [rgb])
    labels = look_at(**FRONTAL, dtype=F64)
    out = render(scene, labels, 32, background=torch.tensor(bg, dtype=F64), backend="torch")

    focal = 32 * 4.2647
    var = (focal * s / 2.7) ** 2 + 0.3  # projected variance plus the 0.3 dilation
    r = torch.arange(32, dtype=F64) - 15.5  # pixel i sits at coordinate i; the centre is at 15.5
    d2 = r[None, :] ** 2 + r[:, None] ** 2
    alpha = torch.clamp(o * torch.exp(-0.5 * d2 / var), max=0.99)
    alpha = torch.where(alpha < 1 / 255, torch.zeros_like(alpha), alpha)

    torch.testing.assert_close(out.alpha[0, 0], alpha, atol=1e-6, rtol=0)
    expected = (
        torch.tensor(rgb, dtype=F64)[:, None, None] * alpha + (1 - alpha) * torch.tensor(bg, dtype=F64)[:, None, None]
    )
    torch.testing.assert_close(out.image[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.depth[0, 0], 2.7 * alpha, atol=1e-6, rtol=0)


def test_front_gaussian_occludes_back_one_whatever_the_storage_order():
    labels = look_at(**FRONTAL, dtype=F64)
    front = ([0.0, 0.0, 0.1], math.log(0.02), 0.9, [1.0, 0.0, 0.0])
    back = ([0.0, 0.0, -0.1], math.log(0.02), 0.9, [0.0, 0.0, 1.0])

    def draw(*gaussians):
        xyz, ls, op, rgb = zip(*gaussians, strict=True)
        return render(single(xyz, ls, op, rgb), labels, 33, backend="torch").image[0, :, 16, 16]

    a1 = 0.9  # both at their centre pixel: alpha = opacity
    expected = torch.tensor([a1, 0.0, 0.9 * (1 - a1)], dtype=F64)
    torch.testing.assert_close(draw(front, back), expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(draw(back, front), expected, atol=1e-9, rtol=0)
    moved = (back[0][:2] + [0.2], *back[1:])  # the blue one now in front
    assert draw(front, moved)[2] > 0.85 and draw(front, moved)[0] < 0.1


def test_opaque_stack_stops_at_transmittance_floor():
    # Ten coincident Gaussians with alpha 0.99 at the centre: after two, T = 1e-4 * ... would fall
    # below 1e-4 at the third, which is skipped with everything behind it.
    n = 10
    xyz = [[0.0, 0.0, 0.2 - 0.04 * i] for i in range(n)]
    scene = single(xyz, [math.log(0.02)] * n, [0.999] * n, [[1.0, 1.0, 1.0]] * n)
    out = render(scene, look_at(**FRONTAL, dtype=F64), 33, backend="torch")
    t = 1 - out.alpha[0, 0, 16, 16]
    assert t == pytest.approx(0.01**2, rel=1e-9)  # exactly two composited (third would give 1e-6)


def test_background_blending_is_linear_in_background():
    scene = random_scene(50, seed=3)
    labels = look_at(**FRONTAL, dtype=F64)
    bg1, bg2 = torch.tensor([0.0, 0.5, 1.0], dtype=F64), torch.tensor([1.0, 0.2, 0.0], dtype=F64)
    o1 = render(scene, labels, 40, background=bg1, backend="torch")
    o2 = render(scene, labels, 40, background=bg2, backend="torch")
    torch.testing.assert_close(o1.image - o2.image, (1 - o1.alpha) * (bg1 - bg2)[None, :, None, None])
    empty = o1.alpha[0, 0] == 0
    assert empty.any()
    torch.testing.assert_close(o1.image[0][:, empty], bg1[:, None].expand(3, int(empty.sum())))
    black = render(scene, labels, 40, background=None, backend="torch")
    torch.testing.assert_close(black.image, o1.image - (1 - o1.alpha) * bg1[None, :, None, None])


def test_near_plane_culls_gaussians_closer_than_0_2():
    labels = look_at(**FRONTAL, dtype=F64)  # camera at z = 2.7 looking toward -z

    def alpha_at(depth):
        scene = single([[0.0, 0.0, 2.7 - depth]], [math.log(0.001)], [0.9], [[1.0, 1.0, 1.0]])
        return render(scene, labels, 17, backend="torch").alpha[0, 0, 8, 8].item()

    assert alpha_at(0.19) == 0.0
    assert alpha_at(0.21) > 0.5


# ------------------------------------------------------- brute-force reference
@pytest.mark.parametrize("seed", range(4))
def test_matches_bruteforce_reference_float64(seed):
    scene = random_scene(300, seed=seed)
    labels = look_at(math.pi / 2 + 0.3 * (seed - 1.5), math.pi / 2 - 0.1, dtype=F64)
    height, width = (40, 52) if seed % 2 else (48, 33)  # partial tiles too
    bg = torch.rand(3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    out = render(scene, labels, (height, width), background=bg, backend="torch")
    image, alpha, depth = reference(scene, labels, height, width, bg)
    assert (alpha > 0.999).mean() > 0.1  # the 1e-4 transmittance stop is exercised
    np.testing.assert_allclose(out.image[0].numpy(), image, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.alpha[0, 0].numpy(), alpha, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.depth[0, 0].numpy(), depth, atol=1e-5, rtol=0)


def test_float32_close_to_float64_reference():
    scene = random_scene(300, seed=7)
    labels = look_at(math.pi / 2 + 0.2, math.pi / 2, dtype=F64)
    out = render(scene.to(torch.float32), labels.float(), 48, background=1.0, backend="torch")
    image, alpha, _ = reference(scene, labels, 48, 48, np.ones(3))
    err = np.abs(out.image[0].numpy() - image)
    # Rare pixels may flip a threshold decision (alpha vs 1/255, T vs 1e-4) under float32 rounding.
    assert np.median(err) < 1e-6 and np.quantile(err, 0.999) < 1e-4
    assert np.abs(out.alpha[0, 0].numpy() - alpha).mean() < 1e-6


def test_cell_and_round_sizes_do_not_change_the_result():
    from cgsgan.render import torch_backend

    scene = random_scene(400, seed=11)
    labels = look_at(**FRONTAL, dtype=F64)
    proj = project(scene, labels, 64, 80)
    table = torch_backend.gaussian_table(proj)
    reference = None
    for cell in (16, 8, 4):
        lists = intersect_tiles(proj, 64, 80, cell=cell)
        for budget in (cell * cell * 32 * 4, 1 << 22):  # four cells of 32 entries at a time, or everything
            out = torch_backend.composite(table, lists, 1, 64, 80, budget=budget)
            if reference is None:
                reference = out
            for a, b in zip(out, reference, strict=True):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# ------------------------------------------------------------------- gradients
def _gradcheck(scene, labels, resolution, background, **kwargs):
    # A few fixed random projections of all outputs: every input's derivative is still checked
    # against finite differences, without one backward pass per output pixel.
    height, width = resolution
    weights = torch.randn(4, scene.batch_size, 5, height, width, generator=torch.Generator().manual_seed(0), dtype=F64)

    def fn(*fields):
        out = render(GaussianScene(*fields), labels, resolution, background=background, backend="torch")
        stacked = torch.cat([out.image, out.alpha, out.depth], dim=1)
        return (weights * stacked).flatten(1).sum(1)

    inputs = [t.clone().requires_grad_() for t in scene.tensors().values()]
    return torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, **kwargs)


def test_gradcheck_all_fields():
    scene = random_scene(4, seed=0, spread=0.1, log_scale=(-4.0, -3.0), opacity_shift=-1.0)
    labels = look_at(math.pi / 2 + 0.2, math.pi / 2, dtype=F64)
    assert _gradcheck(scene, labels, (18, 21), torch.tensor([0.3, 0.6, 0.1], dtype=F64))


def test_gradcheck_batch_and_opacity_cap():
    # Opacities above 0.99 make the alpha cap bind near their centres; the gradient there is 0.
    first = random_scene(6, seed=1, spread=0.1, log_scale=(-4.0, -3.0))
    first = first.with_fields(opacity=first.opacity.abs() + 5.0)
    scene = GaussianScene.cat([first, random_scene(6, seed=2, spread=0.1, log_scale=(-4.0, -3.0))])
    labels = torch.cat([look_at(math.pi / 2 - 0.3, math.pi / 2 + 0.1, dtype=F64), look_at(**FRONTAL, dtype=F64)])
    assert _gradcheck(scene, labels, (17, 20), torch.tensor([0.8, 0.1, 0.5], dtype=F64), fast_mode=True)


def test_slab_scans_match_vectorised_scans(monkeypatch):
    from cgsgan.render import torch_backend

    scene = random_scene(300, seed=4, spread=0.5).requires_grad_()
    labels = look_at(**FRONTAL, dtype=F64)

    def run():
        out = render(scene, labels, 64, background=0.5, backend="torch")
        grads = torch.autograd.grad(out.image.square().sum() + out.alpha.sum(), list(scene.tensors().values()))
        return [out.image, *grads]

    vectorised = run()
    monkeypatch.setattr(torch_backend, "SCAN_LOOP_MIN_PIXELS", 0)
    for a, b in zip(run(), vectorised, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_gradient_reaches_every_field_and_background():
    scene = random_scene(200, seed=2, dtype=torch.float32).requires_grad_()
    bg = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    out = render(scene, look_at(**FRONTAL), 48, background=bg, backend="torch")
    (out.image.square().sum() + out.depth.sum()).backward()
    for name, value in scene.tensors().items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), name
        assert value.grad.abs().sum() > 0, name
    assert bg.grad is not None and bg.grad.abs().sum() > 0


def test_culled_gaussians_get_zero_finite_gradients():
    scene = single([[0.0, 0.0, 0.0], [0.0, 0.0, 2.7]], [math.log(0.02)] * 2, [0.5, 0.5], [[1.0, 0, 0]] * 2)
    scene.requires_grad_()
    out = render(scene, look_at(**FRONTAL, dtype=F64), 32, backend="torch")
    out.image.sum().backward()
    for name, value in scene.tensors().items():
        assert torch.isfinite(value.grad).all(), name
        assert (value.grad[0, 1] == 0).all(), name  # the one at the camera centre is culled


# ----------------------------------------------------------- batch and shapes
def test_batch_equals_individual_renders_and_broadcasts():
    scene = random_scene(100, seed=5, batch=2)
    labels = torch.cat([look_at(math.pi / 2 - 0.4, math.pi / 2, dtype=F64), look_at(**FRONTAL, dtype=F64)])
    both = render(scene, labels, (30, 40), background=0.5, backend="torch")
    for b in range(2):
        one = render(scene[b], labels[b : b + 1], (30, 40), background=0.5, backend="torch")
        torch.testing.assert_close(both.image[b : b + 1], one.image)
    views = render(scene[0], labels, (30, 40), background=0.5, backend="torch")
    torch.testing.assert_close(views.image[1:], render(scene[0], labels[1:], (30, 40), background=0.5).image)
    assert views.image.shape == (2, 3, 30, 40) and views.alpha.shape == views.depth.shape == (2, 1, 30, 40)


def test_output_shapes_and_ranges_for_non_square_images():
    out = render(random_scene(100, seed=6, dtype=torch.float32), look_at(**FRONTAL), (24, 70), background=1.0)
    assert out.image.shape == (1, 3, 24, 70)
    assert out.image.dtype == torch.float32
    assert float(out.alpha.min()) >= 0 and float(out.alpha.max()) <= 1 - 1e-4 + 1e-7


def test_half_precision_scenes_render_in_float32():
    scene = random_scene(100, seed=8, dtype=torch.float32)
    labels = look_at(**FRONTAL)
    full = render(scene, labels, 32, background=1.0)
    for dtype in (torch.float16, torch.bfloat16):
        half = scene.to(dtype).requires_grad_()
        out = render(half, labels, 32, background=1.0)
        assert out.image.dtype == torch.float32
        assert (out.image - full.image).abs().mean() < 0.02  # only the inputs were rounded
        out.image.sum().backward()
        assert half.xyz.grad is not None and half.xyz.grad.dtype == dtype


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "labels, match",
    [
        (torch.zeros(1, 16), "labels"),
        (torch.zeros(25), "labels"),
        (look_at(**FRONTAL).index_fill(1, torch.tensor([3]), float("nan")), "labels"),
        (torch.cat([look_at(**FRONTAL)] * 3), "3 cameras"),
    ],
)
def test_bad_labels_are_refused(labels, match):
    scene = random_scene(10, seed=0, dtype=torch.float32, batch=2)
    with pytest.raises(ValueError, match=match):
        render(scene, labels, 32)


def test_bad_arguments_are_refused():
    scene = random_scene(10, seed=0, dtype=torch.float32)
    labels = look_at(**FRONTAL)
    with pytest.raises(ValueError, match="no Gaussians"):
        render(scene.subset(slice(0, 0)), labels, 32)
    for resolution in (0, (32, 0), (-1, 4), 2.5, (32,), True):
        with pytest.raises(ValueError, match="resolution"):
            render(scene, labels, resolution)
    with pytest.raises(ValueError, match="background"):
        render(scene, labels, 32, background=torch.zeros(4))
    with pytest.raises(ValueError, match="background"):
        render(scene, labels, 32, background=torch.tensor([0.0, float("inf"), 0.0]))
    with pytest.raises(ValueError, match="backend"):
        render(scene, labels, 32, backend="opengl")
    with pytest.raises(ValueError, match="gsplat"):
        render(scene, labels, 32, backend="gsplat")  # CPU scene
    bad = scene.with_fields(scale=scene.scale.index_fill(1, torch.tensor([2]), float("inf")))
    with pytest.raises(ValueError, match="scene.scale"):
        render(bad, labels, 32)


# ------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_backend_agrees_with_torch_backend():
    pytest.importorskip("gsplat")
    scene = random_scene(20_000, seed=0, dtype=torch.float32, spread=0.5, log_scale=(-6.0, -3.5)).to("cuda")
    labels = torch.cat([look_at(math.pi / 2 + 0.4, math.pi / 2), look_at(**FRONTAL)]).cuda()
    scene = GaussianScene.cat([scene, scene])
    scene.requires_grad_()
    a = render(scene, labels, 128, background=0.7, backend="torch")
    b = render(scene, labels, 128, background=0.7, backend="gsplat")
    for x, y in ((a.image, b.image), (a.alpha, b.alpha), (a.depth / 2.7, b.depth / 2.7)):
        diff = (x - y).abs()
        # Opacities above 0.99 differ by design (gsplat's 0.999 clamp, capped at 0.99 here).
        assert diff.mean() < 1e-4 and diff.max() < 2e-2
    ga = torch.autograd.grad(a.image.square().sum(), scene.xyz)[0]
    gb = torch.autograd.grad(b.image.square().sum(), scene.xyz)[0]
    assert torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0) > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_cuda_matches_cpu():
    """Tile lists and compositing must not depend on the device (casts of inf to int once did)."""
    scene = random_scene(20_000, seed=0, dtype=torch.float32, spread=0.5, log_scale=(-6.0, -3.5))
    labels = torch.cat([look_at(math.pi / 2 + 0.4, math.pi / 2), look_at(**FRONTAL)])
    scene = GaussianScene.cat([scene, scene])
    cpu = render(scene, labels, 128, background=0.7, backend="torch")
    gpu = render(scene.to("cuda"), labels.cuda(), 128, background=0.7, backend="torch")
    for x, y in ((cpu.image, gpu.image), (cpu.alpha, gpu.alpha), (cpu.depth / 2.7, gpu.depth / 2.7)):
        diff = (x - y.cpu()).abs()
        assert diff.mean() < 1e-5 and diff.max() < 1e-3  # rounding (1e-4 seen); the inf cast lost whole tiles
