"""cgsgan.apps.mesh: Gaussian head -> coloured triangle mesh (.glb / .obj / .ply)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("skimage")

from cgsgan.apps import mesh as mesh_app  # noqa: E402
from cgsgan.apps.mesh import density_grid, export_mesh, scene_to_mesh  # noqa: E402
from cgsgan.gaussians import GaussianScene  # noqa: E402
from cgsgan.io import load_network  # noqa: E402
from cgsgan.synthetic import demo_head  # noqa: E402

RES = 96  # test resolution: about 0.2-0.3 s a head, 13k-15k vertices
LEVEL = 0.5


def rows(value, n: int, width: int) -> torch.Tensor:
    """[1, n, width] from one row shared by all (k = 1 or width values) or n rows of k values."""
    t = torch.as_tensor(value, dtype=torch.float32)
    t = t.reshape(1, -1) if t.dim() < 2 else t
    return t.broadcast_to(n, width).clone()[None]


def make_scene(xyz, scales, opacity, rgb, quats=(1.0, 0.0, 0.0, 0.0)) -> GaussianScene:
    """A B = 1 scene of N Gaussians from activated values: xyz [N, 3] (or [3]), scales / rgb
    shared or per Gaussian, opacity [N], unit quaternions (w, x, y, z) shared or per Gaussian."""
    xyz = torch.as_tensor(xyz, dtype=torch.float32).reshape(1, -1, 3)
    n = xyz.shape[1]
    opacity = torch.as_tensor(opacity, dtype=torch.float32).reshape(1, n, 1)
    return GaussianScene.from_activated(xyz, rows(scales, n, 3), rows(quats, n, 4), opacity, rows(rgb, n, 3))


def widened(sigma: float, voxel: float) -> float:
    """The standard deviation the grid sees: sigma widened by half a voxel (see the module)."""
    return math.sqrt(sigma**2 + (voxel / 2) ** 2)


@pytest.fixture(scope="module")
def heads() -> dict[str, GaussianScene]:
    """A head from the built-in network (5,376 Gaussians) and the demo head (20,000)."""
    G = load_network()
    z = torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net, _ = G(z, truncation_psi=0.8)
    return {"network": net.detach(), "demo": demo_head(seed=0)}


@pytest.fixture(scope="module")
def meshes(heads) -> dict[str, trimesh.Trimesh]:
    return {name: scene_to_mesh(scene, resolution=RES) for name, scene in heads.items()}


@pytest.fixture(scope="module")
def small_scene() -> GaussianScene:
    """A small blob of a few Gaussians: a quick mesh for the file tests."""
    g = torch.Generator().manual_seed(3)
    xyz = 0.08 * torch.randn(40, 3, generator=g)
    rgb = torch.rand(40, 3, generator=g)
    return make_scene(xyz, torch.full((40, 1), 0.05), torch.full((40,), 0.8), rgb)


# ------------------------------------------------------------------ heads
@pytest.mark.parametrize("name", ["network", "demo"])
def test_head_mesh_is_one_closed_outward_surface(name, meshes):
    mesh = meshes[name]
    assert len(mesh.faces) > 5000 and len(mesh.vertices) > 2500
    # Closed: trimesh's is_watertight (every edge shared by exactly two faces) on the whole
    # mesh, which is a single connected piece (components=1), consistently wound outward.
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.body_count == 1
    assert mesh.volume > 0
    assert np.isfinite(mesh.vertices).all()
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert mesh.metadata["resolution"] == RES and mesh.metadata["level"] == LEVEL


@pytest.mark.parametrize("name", ["network", "demo"])
def test_head_mesh_bounding_box(name, heads, meshes):
    """The mesh's box against the box of the Gaussians of opacity > level.

    Inside: each such Gaussian alone reaches ``level`` at its centre, so its centre is inside
    the surface; marching cubes may cut a corner by less than a voxel. Outside: the density is
    zero beyond 3 (widened) sigma of every Gaussian, so the surface can stick out of that box
    by at most 3 * max sigma (plus a voxel for the grid), which is how far translucent
    Gaussians next to the opaque ones can carry it (0.05 for the network head, about 8% of
    its size; the demo head's Gaussians are all opaque and it stays within 0.015).
    """
    scene, mesh = heads[name], meshes[name]
    voxel = mesh.metadata["voxel"]
    xyz = scene.xyz[0].numpy()
    opacity = scene.opacities()[0, :, 0].numpy()
    opaque = xyz[opacity > LEVEL]
    lo, hi = mesh.bounds
    reach = 3 * widened(float(scene.scales().max()), voxel) + voxel
    # inside: the mesh keeps the largest piece, so a stray opaque Gaussian apart from the head may be left
    # out; the box of all but the outermost 1% on each side must be inside
    core_lo, core_hi = np.quantile(opaque, 0.01, axis=0), np.quantile(opaque, 0.99, axis=0)
    assert np.all(lo <= core_lo + voxel) and np.all(hi >= core_hi - voxel)
    assert np.all(lo >= opaque.min(0) - reach) and np.all(hi <= opaque.max(0) + reach)
    # and never past the 3-sigma box of all Gaussians the mesher uses (opacity >= 1/255)
    used = xyz[opacity >= 1 / 255]
    assert np.all(lo >= used.min(0) - reach) and np.all(hi <= used.max(0) + reach)


@pytest.mark.parametrize("name", ["network", "demo"])
def test_vertex_colours_are_the_local_weighted_mean(name, heads, meshes):
    """At vertices, the colour is the density-weighted mean rgb of the Gaussians there.

    Checked against a direct evaluation at 300 vertices (sum of w_i rgb_i / sum of w_i with
    w_i = opacity_i exp(-0.5 d^T Sigma_i^-1 d) inside 3 sigma); the mesh samples grids of
    these sums trilinearly and stores 8 bits, so a little error is expected (measured: mean
    0.004-0.005, 95th percentile 0.011-0.020 at this resolution).
    """
    scene, mesh = heads[name], meshes[name]
    voxel = mesh.metadata["voxel"]
    step = max(1, len(mesh.vertices) // 300)
    verts = torch.tensor(mesh.vertices[::step], dtype=torch.float32)
    cov = mesh_app._covariances(scene.scales()[0], scene.rotations()[0], voxel / 2)
    inv = torch.linalg.inv(cov)
    d = verts[:, None, :] - scene.xyz[0][None]
    q = torch.einsum("vni,nij,vnj->vn", d, inv, d)
    w = scene.opacities()[0, :, 0] * torch.exp(-0.5 * q) * (q <= 9)
    density = w.sum(1)
    assert (density > 0.05).all()  # the vertices do lie on the head
    expected = (w @ scene.rgb()[0].clamp(0, 1)) / density[:, None]
    got = torch.tensor(mesh.visual.vertex_colors[::step, :3] / 255.0, dtype=torch.float32)
    err = (got - expected).abs()
    assert err.mean() < 0.015
    assert torch.quantile(err.flatten(), 0.95) < 0.05


def test_demo_head_mean_colour(heads, meshes):
    """The demo head is all opaque discs on its surface, so the mesh's area-weighted mean colour
    is close to the discs' mean rgb weighted by opacity and disc area (the product of the two
    larger axes: hair discs are stretched, so fewer of them cover the same area as skin).
    Measured: within 0.033 per channel (the wider backing discs under the surface count too);
    weighting by opacity alone is 0.083 off on this dark-haired head.

    (The network head is not: its opaque Gaussians are dark and lie under brighter
    translucent ones, which the 0.5 surface and the renderer both show.)
    """
    scene, mesh = heads["demo"], meshes["demo"]
    axes = scene.scales()[0].sort(dim=-1).values
    weight = scene.opacities()[0] * axes[:, 1:2] * axes[:, 2:3]
    reference = ((scene.rgb()[0].clamp(0, 1) * weight).sum(0) / weight.sum()).numpy()
    colours = mesh.visual.vertex_colors[:, :3] / 255.0
    mean = (mesh.area_faces[:, None] * colours[mesh.faces].mean(1)).sum(0) / mesh.area
    assert np.abs(mean - reference).max() < 0.04


# ---------------------------------------------------------------- analytic
@pytest.mark.parametrize(("opacity", "level"), [(0.9, 0.5), (0.6, 0.2)])
def test_single_gaussian_is_the_closed_form_sphere(opacity, level):
    """One isotropic Gaussian: density o exp(-r^2 / 2 s^2) = level at r = s sqrt(2 ln(o / level)),
    with s the widened sigma; vertices within 1% of that radius (measured: 0.3%)."""
    sigma, centre, colour = 0.15, [0.1, -0.05, 0.02], [0.2, 0.6, 0.9]
    scene = make_scene(centre, [sigma], [opacity], colour)
    mesh = scene_to_mesh(scene, resolution=48, level=level)
    radius = widened(sigma, mesh.metadata["voxel"]) * math.sqrt(2 * math.log(opacity / level))
    distance = np.linalg.norm(mesh.vertices - np.array(centre), axis=1)
    assert np.abs(distance / radius - 1).max() < 0.01
    assert mesh.is_watertight and mesh.euler_number == 2  # a sphere
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.03)
    # a lone Gaussian's colour everywhere
    np.testing.assert_allclose(
        mesh.visual.vertex_colors[:, :3] / 255.0, np.tile(colour, (len(mesh.vertices), 1)), atol=1 / 255
    )


def test_rotated_ellipsoid_extent():
    """A rotated anisotropic Gaussian's surface is the ellipsoid d^T Sigma^-1 d = 2 ln(o / level):
    its half-extent along axis a is sqrt(2 ln(o / level) Sigma_aa)."""
    scales = torch.tensor([0.2, 0.06, 0.1])
    quat = torch.nn.functional.normalize(torch.tensor([0.9, 0.3, -0.2, 0.25]), dim=0)
    scene = make_scene([0.0, 0.0, 0.0], scales, [0.95], [0.5], quats=quat)
    mesh = scene_to_mesh(scene, resolution=64)
    cov = mesh_app._covariances(scales[None], quat[None], mesh.metadata["voxel"] / 2)[0].double()
    half = torch.sqrt(2 * math.log(0.95 / LEVEL) * torch.diagonal(cov)).numpy()
    np.testing.assert_allclose(mesh.bounds[1], half, rtol=0.02)
    np.testing.assert_allclose(mesh.bounds[0], -half, rtol=0.02)
    # every vertex on the ellipsoid
    inv = torch.linalg.inv(cov).numpy()
    q = np.einsum("vi,ij,vj->v", mesh.vertices, inv, mesh.vertices)
    np.testing.assert_allclose(q, 2 * math.log(0.95 / LEVEL), rtol=0.03)


def test_density_grid_matches_direct_sum(heads):
    """The chunked splatting equals a direct sum over all Gaussians at grid points."""
    scene = heads["network"]
    density, colour, grid = density_grid(scene, resolution=40)
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randint(0, n, (400,), generator=g) for n in grid.shape], dim=1)
    idx = torch.cat([idx, (density > 0.2).nonzero()[::50]])  # plenty of points on the head
    points = (grid.origin + grid.voxel * idx.double()).float()
    cov = mesh_app._covariances(scene.scales()[0], scene.rotations()[0], grid.voxel / 2)
    d = points[:, None, :] - scene.xyz[0][None]
    q = torch.einsum("pni,nij,pnj->pn", d, torch.linalg.inv(cov), d)
    opacity = scene.opacities()[0, :, 0]
    w = opacity * (opacity >= 1 / 255) * torch.exp(-0.5 * q) * (q <= 9)  # fainter ones are skipped, as rasterisers do
    got = density[idx[:, 0], idx[:, 1], idx[:, 2]]
    torch.testing.assert_close(got, w.sum(1), atol=2e-4, rtol=1e-4)
    got_colour = colour[:, idx[:, 0], idx[:, 1], idx[:, 2]].T
    torch.testing.assert_close(got_colour, w @ scene.rgb()[0].clamp(0, 1), atol=2e-4, rtol=1e-4)


def test_small_work_buffer_gives_the_same_grid(monkeypatch):
    """Chunking (and slicing a box bigger than the buffer) does not change the result."""
    scene = make_scene(
        [[0.0, 0.0, 0.0], [0.2, 0.1, 0.0], [-0.1, 0.05, 0.1], [0.05, -0.2, -0.1]],
        [[0.2], [0.01], [0.02], [0.03]],
        [0.9, 0.7, 0.5, 0.8],
        [[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.2, 0.9, 0.2], [0.5, 0.5, 0.9]],
    )
    density, colour, _ = density_grid(scene, resolution=24)
    monkeypatch.setattr(mesh_app, "WORK_ELEMENTS", 500)
    small_density, small_colour, _ = density_grid(scene, resolution=24)
    torch.testing.assert_close(small_density, density, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(small_colour, colour, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------ pieces and cavities
def test_components_drop_floaters():
    scene = make_scene([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], [[0.1], [0.02]], [0.9, 0.9], [0.5])
    one = scene_to_mesh(scene, resolution=64)
    both = scene_to_mesh(scene, resolution=64, components=None)
    assert one.body_count == 1 and both.body_count == 2
    assert one.bounds[1, 0] < 0.2 and both.bounds[1, 0] > 0.5
    assert scene_to_mesh(scene, resolution=64, components=2).body_count == 2


def test_fill_gives_one_wall_for_a_shell():
    """A hollow shell of Gaussians: filled, one outer surface; unfilled, an outer and an inner one."""
    n = 1500
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    xyz = 0.3 * torch.stack([phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()], dim=1)
    scene = make_scene(xyz, [0.02], torch.full((n,), 0.9), [0.5])
    filled = scene_to_mesh(scene, resolution=48, components=None)
    hollow = scene_to_mesh(scene, resolution=48, components=None, fill=False)
    assert filled.body_count == 1 and filled.euler_number == 2
    assert hollow.body_count == 2 and hollow.is_watertight
    assert filled.volume > hollow.volume


def test_bounds_that_cut_the_scene_still_give_a_closed_mesh():
    scene = make_scene([0.0, 0.0, 0.0], [0.15], [0.9], [0.5])
    whole = scene_to_mesh(scene, resolution=40)
    half = scene_to_mesh(scene, resolution=40, bounds=[(-0.5, -0.5, 0.0), (0.5, 0.5, 0.5)])
    assert half.is_watertight and half.volume > 0
    assert half.bounds[0, 2] >= -half.metadata["voxel"] * 1e-6  # the cut is capped at z = 0
    assert half.bounds[1, 2] == pytest.approx(whole.bounds[1, 2], abs=2 * half.metadata["voxel"])


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_file_round_trip(suffix, small_scene, tmp_path):
    mesh = scene_to_mesh(small_scene, resolution=40)
    path = export_mesh(small_scene, tmp_path / f"sub/head{suffix}", resolution=40)
    assert path == tmp_path / f"sub/head{suffix}" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.vertices) == len(mesh.vertices) and len(loaded.faces) == len(mesh.faces)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], mesh.visual.vertex_colors[:, :3])
    assert loaded.is_watertight


def test_up_minus_y(small_scene):
    ours = scene_to_mesh(small_scene, resolution=32)
    down = scene_to_mesh(small_scene, resolution=32, up="-y")
    np.testing.assert_allclose(down.vertices, ours.vertices * [1, -1, -1])
    np.testing.assert_array_equal(down.faces, ours.faces)
    assert down.volume == pytest.approx(ours.volume)  # still wound outward


def test_failed_export_keeps_the_old_file(small_scene, tmp_path):
    path = tmp_path / "head.glb"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="level"):
        export_mesh(small_scene, path, resolution=16, level=50.0)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["head.glb"]


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 7}, "resolution"),
        ({"resolution": 16.0}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"resolution": 10_000}, "resolution"),
        ({"level": 0}, "level"),
        ({"level": float("nan")}, "level"),
        ({"level": "0.5"}, "level"),
        ({"level": 50.0}, "peak density"),
        ({"components": 0}, "components"),
        ({"up": "z"}, "up"),
        ({"bounds": [(0, 0, 0), (1, 1)]}, "bounds"),
        ({"bounds": [(0, 0, 0), (-1, 1, 1)]}, "bounds"),
        ({"device": "nope"}, "device"),
    ],
)
def test_bad_arguments(kwargs, match, small_scene):
    with pytest.raises(ValueError, match=match):
        scene_to_mesh(small_scene, **{"resolution": 16, **kwargs})


def test_bad_scenes(small_scene):
    empty = small_scene.subset(slice(0, 0))
    with pytest.raises(ValueError, match="empty"):
        scene_to_mesh(empty)
    faint = small_scene.with_fields(opacity=torch.full_like(small_scene.opacity, -10.0))
    with pytest.raises(ValueError, match="empty"):
        scene_to_mesh(faint)
    broken = small_scene.with_fields(xyz=small_scene.xyz.clone().index_fill_(1, torch.tensor([0]), float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        scene_to_mesh(broken)
    with pytest.raises(ValueError, match="GaussianScene"):
        scene_to_mesh("head.ply")


@pytest.mark.parametrize("name", ["head.stl", "head", "head.glb.tmp"])
def test_unknown_extension(name, small_scene, tmp_path):
    with pytest.raises(ValueError, match="must end in .glb, .obj, .ply"):
        export_mesh(small_scene, tmp_path / name)
    assert not any(tmp_path.iterdir())


def test_missing_dependency_names_the_extra(monkeypatch, small_scene):
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r'pip install "cgsgan\[mesh\]"'):
        scene_to_mesh(small_scene, resolution=16)


def test_readme_mesh_figure_projects_a_sphere_to_its_silhouette():
    """docs/mesh/figure.py draws with the standard camera: a red sphere at the origin covers the disc that
    the pinhole model predicts, fully lit at its centre, and nothing else."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "mesh" / "figure.py"
    spec = importlib.util.spec_from_file_location("mesh_figure", path)
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    sphere.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(sphere.vertices), 1)).astype(np.uint8)
    image = np.asarray(figure.draw(sphere, yaw_deg=30.0, size=200)).astype(int)
    covered = (image != 255).any(-1)
    focal, radius, distance = 4.2647, 0.2, 2.7  # the standard camera's normalised focal and orbit
    expected = 2 * 200 * focal * figure.ZOOM * radius / math.sqrt(distance**2 - radius**2)  # tangent rays
    assert abs(covered[100].sum() - expected) <= 3 and abs(covered[:, 100].sum() - expected) <= 3
    assert tuple(image[100, 100]) == (255, 0, 0) and not covered[0].any() and not covered[:, 0].any()
