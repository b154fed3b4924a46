"""cgsgan.synthetic: parametric heads and the synthetic dataset writer."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgsgan.camera import DEFAULT_FOCAL, DEFAULT_RADIUS, camera_positions, look_at
from cgsgan.io import read_ply
from cgsgan.render import render
from cgsgan.synthetic import HAIR_STYLES, HeadBuilder, HeadParams, build_head, sample_head_params
from cgsgan.synthetic import HEAD_SCALE as S
from cgsgan.synthetic import dataset as synth
from cgsgan.synthetic.dataset import pose_labels, sample_poses, synthesize_dataset

SMALL = dict(count=6, resolution=32, gaussians=1000, ply_count=2, progress=False)
FRONTAL = (math.pi / 2, math.pi / 2)


@pytest.fixture(autouse=True)
def one_thread():
    """Small ops on two threads spin-wait badly when the cores are busy: keep the tests steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("synth") / "a", seed=3, workers=1, **SMALL)


@pytest.fixture(scope="module")
def builder() -> HeadBuilder:
    return HeadBuilder(4000)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> list:
    return json.loads((root / "dataset.json").read_text())["labels"]


# ------------------------------------------------------------------ layout
def test_layout_and_formats(dataset):
    names = [f"{i:05d}.png" for i in range(SMALL["count"])]
    assert sorted(p.name for p in dataset.glob("*.png")) == names
    assert sorted(p.name for p in (dataset / "mask").glob("*.png")) == names
    for name in names:
        with Image.open(dataset / name) as image, Image.open(dataset / "mask" / name) as mask:
            assert (image.mode, image.size) == ("RGB", (32, 32))
            assert (mask.mode, mask.size) == ("L", (32, 32))
    labels = _labels(dataset)
    assert [name for name, _ in labels] == names
    for _, label in labels:
        assert len(label) == 25 and all(isinstance(v, float) and math.isfinite(v) for v in label)
    settings = json.loads((dataset / "synth.json").read_text())
    assert settings["count"] == 6 and settings["resolution"] == 32 and settings["seed"] == 3
    assert settings["gaussians_per_head"] == 1000 and settings["version"] == synth.SYNTH_VERSION


def test_attributes_match_images(dataset):
    with open(dataset / "attributes.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["file", "yaw_deg", "pitch_deg", "smile"]
    assert [r["file"] for r in rows] == [name for name, _ in _labels(dataset)]
    for row, (_, label) in zip(rows, _labels(dataset), strict=True):
        assert 0 <= float(row["smile"]) <= 1
        # The pose in the CSV is the camera of the label: azimuth from +z toward +x, elevation.
        x, y, z = camera_positions(torch.tensor([label], dtype=torch.float64))[0].tolist()
        assert math.degrees(math.atan2(x, z)) == pytest.approx(float(row["yaw_deg"]), abs=1e-3)
        assert math.degrees(math.asin(y / DEFAULT_RADIUS)) == pytest.approx(float(row["pitch_deg"]), abs=1e-3)


def test_masks_agree_with_images(dataset):
    for path in sorted(dataset.glob("*.png")):
        image = np.asarray(Image.open(path))
        mask = np.asarray(Image.open(dataset / "mask" / path.name))
        assert (image[mask == 0] == 255).all()  # no head: white background
        assert mask[16, 16] == 255 and (mask == 255).mean() > 0.05  # a head in the middle
        assert (image[mask == 255] < 250).any(axis=-1).mean() > 0.9  # and it is not white


def test_ply_subset(dataset):
    paths = sorted((dataset / "scenes").glob("*.ply"))
    assert [p.name for p in paths] == ["00000.ply", "00001.ply"]
    scene = read_ply(paths[0])
    assert scene.num_gaussians == 1000
    assert scene.xyz.abs().max() < 0.5


# ------------------------------------------------------------ determinism
def test_same_seed_same_bytes_any_workers(dataset, tmp_path):
    again = synthesize_dataset(tmp_path / "b", seed=3, workers=2, **SMALL)
    assert _files(again) == _files(dataset)


def test_first_images_do_not_depend_on_count(dataset, tmp_path):
    fewer = synthesize_dataset(tmp_path / "e", seed=3, workers=1, **{**SMALL, "count": 3})
    assert _labels(fewer) == _labels(dataset)[:3]
    rows = (dataset / "attributes.csv").read_text().splitlines()
    assert (fewer / "attributes.csv").read_text().splitlines() == rows[:4]


def test_different_seed_differs(dataset, tmp_path):
    other = synthesize_dataset(tmp_path / "c", seed=4, workers=1, **{**SMALL, "ply_count": 0})
    assert _labels(other) != _labels(dataset)
    for i in range(SMALL["count"]):
        assert (other / f"{i:05d}.png").read_bytes() != (dataset / f"{i:05d}.png").read_bytes()


def test_interrupted_run_has_no_dataset_json(tmp_path, monkeypatch):
    calls = []

    def fail_second(job, builder, start, stop):
        calls.append(start)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(job, builder, start, stop)

    real = synth._write_batch
    monkeypatch.setattr(synth, "_write_batch", fail_second)
    monkeypatch.setattr(synth, "BATCH", 2)
    with pytest.raises(KeyboardInterrupt):
        synthesize_dataset(tmp_path / "d", seed=0, workers=1, **SMALL)
    assert (tmp_path / "d" / "00000.png").is_file()
    assert not (tmp_path / "d" / "dataset.json").exists()


# ---------------------------------------------------------------- cameras
def test_pose_distribution():
    yaw, pitch = sample_poses(2000, torch.Generator().manual_seed(0))
    assert yaw.abs().max() <= 60 and pitch.abs().max() <= 18  # truncated at 3 std
    assert abs(float(yaw.mean())) < 2 and 17 < float(yaw.std()) < 22
    assert abs(float(pitch.mean())) < 0.6 and 5 < float(pitch.std()) < 6.6
    assert 0.6 < float((yaw.abs() < 20).double().mean()) < 0.75  # most views near frontal
    assert 0.02 < float((yaw.abs() > 40).double().mean()) < 0.08  # with tails to the sides
    assert (yaw > 30).any() and (yaw < -30).any()
    again = sample_poses(2000, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], yaw) and torch.equal(again[1], pitch)
    wide, _ = sample_poses(2000, torch.Generator().manual_seed(0), yaw_std=30)
    assert wide.abs().max() > 60


def test_pose_labels_convention():
    labels = pose_labels(torch.tensor([0.0, 30.0, 0.0]), torch.tensor([0.0, 0.0, 10.0]))
    assert torch.allclose(labels[0], look_at(*FRONTAL)[0], atol=1e-6)
    assert labels[0, 16] == pytest.approx(DEFAULT_FOCAL)
    frontal, side, above = camera_positions(labels).tolist()
    assert frontal == pytest.approx([0, 0, DEFAULT_RADIUS], abs=1e-5)
    assert side[0] > 0 and math.degrees(math.atan2(side[0], side[2])) == pytest.approx(30, abs=1e-4)
    assert math.degrees(math.asin(above[1] / DEFAULT_RADIUS)) == pytest.approx(10, abs=1e-4)


# ------------------------------------------------------------------ heads
def test_params_vary_widely():
    heads = [sample_head_params(seed) for seed in range(400)]
    assert {h.hair_style for h in heads} == set(HAIR_STYLES)
    luminance = [sum(h.skin) / 3 for h in heads]
    assert min(luminance) < 0.3 and max(luminance) > 0.8
    assert len({tuple(round(c, 1) for c in h.hair_colour) for h in heads}) > 8
    assert 0.12 < sum(h.glasses for h in heads) / len(heads) < 0.28
    smiles = [h.smile for h in heads]
    assert min(smiles) < 0.05 and max(smiles) > 0.95
    assert sample_head_params(7) == sample_head_params(7) != sample_head_params(8)


@pytest.mark.parametrize(
    "change, name",
    [({"hair_style": "mohawk"}, "hair_style"), ({"smile": 1.5}, "smile"), ({"skin": (1.2, 0, 0)}, "skin")],
)
def test_bad_params_raise(change, name):
    with pytest.raises(ValueError, match=name):
        HeadParams(**change)


@pytest.mark.parametrize("style", HAIR_STYLES)
def test_every_style_builds(style, builder):
    scene = builder.build(replace(sample_head_params(11), hair_style=style, glasses=True))
    assert scene.batch_size == 1 and scene.num_gaussians == 4000
    for name, value in scene.tensors().items():
        assert torch.isfinite(value).all(), name
    # Every centre lies in the generator's cube; above the frame's bottom edge (y = -0.32 at the origin), every
    # Gaussian to 3 standard deviations too (the bust below it is sampled sparsely, with wide discs).
    assert scene.xyz.abs().max() < 0.49
    framed = scene.xyz[0, :, 1] > -0.35
    assert _reach(scene)[framed].max() < 0.5


def _reach(scene) -> torch.Tensor:
    """|x|, |y|, |z| [N, 3] plus 3 standard deviations of each Gaussian along the world axes."""
    w, x, y, z = scene.rotations()[0].unbind(-1)
    rot = torch.stack(
        (
            torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)), -1),
            torch.stack((2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)), -1),
            torch.stack((2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), -1),
        ),
        -2,
    )  # [N, 3, 3], columns are the Gaussian's axes
    std = (rot * scene.scales()[0][:, None, :]).square().sum(-1).sqrt()
    return scene.xyz[0].abs() + 3 * std


def test_build_head_matches_builder_count():
    params = sample_head_params(5)
    scene = build_head(params, 1500)
    assert scene.num_gaussians == 1500
    assert 0.2 * S < float(scene.xyz[0, :, 0].max() - scene.xyz[0, :, 0].min()) < 0.5 * S  # head and shoulders


def world(*point: float) -> tuple[float, ...]:
    """A point given in the heads' model units, in world units (the builder scales its scenes)."""
    return tuple(S * c for c in point)


def _frontal(scene, size=128):
    return render(scene, look_at(*FRONTAL), size, background=1.0).image[0]


def _window(point, half, size=128):
    """Pixel window around a world point in the frontal 128 px view."""
    x, y, z = point
    scale = DEFAULT_FOCAL * size / (DEFAULT_RADIUS - z)
    row, col = round(-scale * y + (size - 1) / 2), round(scale * x + (size - 1) / 2)
    return slice(None), slice(row - half, row + half + 1), slice(col - half, col + half + 1)


def test_smile_changes_the_mouth(builder):
    params = replace(sample_head_params(2), glasses=False, beard=0.0)
    neutral = _frontal(builder.build(replace(params, smile=0.0)), 256)
    smiling = _frontal(builder.build(replace(params, smile=1.0)), 256)
    change = (smiling - neutral).abs()
    mouth, neck = _window(world(0, -0.06, 0.12), 10, 256), _window(world(0, -0.16, 0.05), 10, 256)
    assert change[mouth].mean() > 0.03
    assert change[mouth].mean() > 10 * change[neck].mean()
    # Teeth: the smiling mouth has whiter pixels than the neutral one.
    assert smiling[mouth].amin(0).amax() > neutral[mouth].amin(0).amax() + 0.04


def test_glasses_frame_the_eyes(builder):
    params = replace(sample_head_params(4), glasses=True, glasses_colour=(0.03, 0.03, 0.03))
    scene = builder.build(params)
    bare = builder.build(replace(params, glasses=False))
    assert scene.num_gaussians == bare.num_gaussians
    # Thin dark Gaussians in front of the eyes.
    xyz, rgb = scene.xyz[0], scene.rgb()[0]
    front = (xyz[:, 2] > 0.12 * S) & (xyz[:, 1] - 0.047 * S).abs().lt(0.03 * S) & (rgb.amax(-1) < 0.1)
    assert int(front.sum()) > 60
    with_glasses, without = _frontal(scene), _frontal(bare)
    eyes = _window(world(0, 0.05, 0.12), 10)
    assert (with_glasses[eyes].mean(0) < 0.15).sum() > (without[eyes].mean(0) < 0.15).sum() + 10


# -------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"count": 0}, "count"),
        ({"count": 2.5}, "count"),
        ({"resolution": 48}, "resolution"),
        ({"resolution": 8}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"gaussians": 10}, "gaussians"),
        ({"seed": -1}, "seed"),
        ({"yaw_std": 0}, "yaw_std"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise(kwargs, name, tmp_path):
    with pytest.raises(ValueError, match=name):
        synthesize_dataset(tmp_path / "x", **{**SMALL, **kwargs})
    assert not (tmp_path / "x").exists()


def test_out_dir_must_be_a_new_or_empty_directory(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        synthesize_dataset(file, **SMALL)
    with pytest.raises(ValueError, match="out_dir"):
        synthesize_dataset(tmp_path, **SMALL)  # holds the file


def test_importing_the_data_package_loads_no_heads():
    import subprocess
    import sys

    code = "import sys, cgsgan.data, cgsgan.train; print(sorted(m for m in sys.modules if 'synthetic' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
