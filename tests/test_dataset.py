import copy
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgsgan.camera import look_at
from cgsgan.data.catalog import DatasetError, scan
from cgsgan.data.dataset import BadImageWarning, HeadsDataset, InfiniteSampler, LabelSampler
from cgsgan.data.source import Source

RES = 16
DATA = Path(__file__).parent / "data"


def labels_for(count: int) -> list[list[float]]:
    yaw = torch.linspace(math.pi / 2 - 0.5, math.pi / 2 + 0.5, count, dtype=torch.float64)
    return look_at(yaw, torch.full_like(yaw, math.pi / 2), dtype=torch.float64).tolist()


def noise_heads(root: Path, count: int = 8, resolution: int = 64) -> Path:
    """Noise images with a box mask and frontal-ish labels: enough for training's mechanics."""
    (root / "mask").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(labels_for(count)):
        name = f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)).save(root / name)
        mask = np.zeros((resolution, resolution), np.uint8)
        mask[resolution // 8 : resolution * 7 // 8, resolution * 3 // 16 : resolution * 13 // 16] = 255
        Image.fromarray(mask).save(root / "mask" / name)
        rows.append([name, label])
    (root / "dataset.json").write_text(json.dumps({"labels": rows}))
    return root


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_dataset(root: Path, count: int = 6, layout: str = "ffhqc", mask_res: int = RES) -> Path:
    """A tiny dataset: image i is a solid colour (10 i, 100, 200 - 10 i) with a mask covering its left half."""
    rng = np.random.default_rng(0)
    images = root / str(RES) if layout == "ffhqc" else root
    rows = []
    for i, label in enumerate(labels_for(count)):
        name = f"{i:05d}.png" if layout == "ffhqc" else f"{i // 3:05d}/img{i:08d}.png"
        pixels = np.empty((RES, RES, 3), np.uint8)
        pixels[:] = (10 * i, 100, 200 - 10 * i)
        pixels[0, 0] = rng.integers(0, 255, 3)  # a distinct corner, to see flips
        write_png(images / name, pixels)
        if layout == "ffhqc":
            mask = np.zeros((mask_res, mask_res), np.uint8)
            mask[:, : mask_res // 2] = 255
            write_png(root / "mask" / name, mask)
        rows.append([name, label])
    (root / "dataset.json").write_text(json.dumps({"labels": rows}))
    return images


@pytest.fixture
def ffhqc(tmp_path):
    return make_dataset(tmp_path)


def test_ffhqc_layout_composites_through_the_mask(ffhqc):
    data = HeadsDataset(ffhqc, background="white")
    assert len(data) == 6 and data.resolution == RES
    item = data[3]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, RES, RES)
    assert item["mask"].shape == (1, RES, RES)
    assert item["number"] == 3
    assert item["image"][:, 5, 2].tolist() == [30, 100, 170]  # inside the mask: the photo
    assert item["image"][:, 5, 12].tolist() == [255, 255, 255]  # outside: white
    assert torch.allclose(item["label"], torch.tensor(labels_for(6)[3], dtype=torch.float32))


def test_random_backgrounds_are_reproducible_per_seed_and_index(ffhqc):
    a, b = HeadsDataset(ffhqc, seed=1), HeadsDataset(ffhqc, seed=1)
    colours = [a[i]["image"][:, 5, 12] for i in range(6)]
    assert all(torch.equal(c, b[i]["image"][:, 5, 12]) for i, c in enumerate(colours))
    assert len({tuple(c.tolist()) for c in colours}) > 1
    assert all(int(c.max()) <= 254 for c in colours)
    # Index 6 is image 0 again, with a new background: the draw follows the index.
    assert torch.equal(a[6]["image"][:, 5, 2], a[0]["image"][:, 5, 2])
    assert not torch.equal(a[6]["image"][:, 5, 12], a[0]["image"][:, 5, 12])
    assert not torch.equal(HeadsDataset(ffhqc, seed=2)[0]["image"], a[0]["image"])


def test_eg3d_nested_names_without_masks(tmp_path):
    root = make_dataset(tmp_path, layout="eg3d")
    data = HeadsDataset(root, background="white")
    assert [e.name for e in data.catalog.entries][:2] == ["00000/img00000000.png", "00000/img00000001.png"]
    assert data[4]["number"] == 4
    assert data[4]["mask"].min() == 255
    assert data[4]["image"][:, 5, 12].tolist() == [40, 100, 160]  # no mask: the photo everywhere


def test_zip_gives_the_same_items_as_the_folder(tmp_path, ffhqc, monkeypatch):
    archive = tmp_path / "heads.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in ffhqc.iterdir():
            z.write(f, f.name)
        for f in (tmp_path / "mask").iterdir():
            z.write(f, f"mask/{f.name}")
        z.write(tmp_path / "dataset.json", "dataset.json")
    monkeypatch.chdir(tmp_path)
    zipped, folder = HeadsDataset("heads.zip", seed=3), HeadsDataset(Path(str(RES)), seed=3)
    monkeypatch.chdir("/")  # no dependence on the working directory once opened
    for i in range(len(folder)):
        a, b = zipped[i], folder[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_xflip_mirrors_images_and_labels_like_the_official_rule(tmp_path):
    entry = json.loads((DATA / "cameras.json").read_text())["entries"][1]  # yaw pi/2 + 0.5
    root = make_dataset(tmp_path, count=2)
    rows = json.loads((tmp_path / "dataset.json").read_text())["labels"]
    rows[1][1] = entry["label25"]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": rows}))
    data = HeadsDataset(root, xflip=True, background="white")
    assert len(data) == 4
    assert torch.equal(data[3]["image"], data[1]["image"].flip(-1))
    assert torch.allclose(data[3]["label"], torch.tensor(entry["label25_xflip"], dtype=torch.float32), atol=1e-6)
    assert torch.equal(data.labels()[3], data[3]["label"])


def test_distribution_selects_and_repeats_images(ffhqc, tmp_path):
    dist = tmp_path / "dist.json"
    dist.write_text(json.dumps([2, 2, 5]))
    data = HeadsDataset(ffhqc, distribution=dist)
    assert [data[i]["number"] for i in range(len(data))] == [2, 2, 5]
    with pytest.raises(DatasetError, match="not in the dataset: 9"):
        HeadsDataset(ffhqc, distribution=[1, 9])
    dist.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON list of non-negative image numbers"):
        HeadsDataset(ffhqc, distribution=dist)


def test_label_sampler_follows_the_rebalanced_mirrored_distribution(ffhqc):
    data = HeadsDataset(ffhqc, distribution=[4] * 9 + [0], xflip=True)
    drawn = LabelSampler(data).sample(2000, torch.Generator().manual_seed(0))
    assert drawn.shape == (2000, 25)
    label = torch.tensor(labels_for(6)[4], dtype=torch.float32)
    share = (drawn == label).all(dim=1).float().mean().item()
    assert 0.4 < share < 0.5  # 9 of 20 items are image 4 unflipped


def test_infinite_sampler_shards_rounds_and_resumes():
    stream = InfiniteSampler(10, seed=4)
    first = [i for _, i in zip(range(25), stream, strict=False)]
    assert sorted(i % 10 for i in first[:10]) == list(range(10))  # each round is a permutation
    assert all(10 <= i < 20 for i in first[10:20])  # round 1 indices wrap with a new background
    ranks = [InfiniteSampler(10, rank=r, world=2, seed=4) for r in range(2)]
    shards = [[i for _, i in zip(range(5), s, strict=False)] for s in ranks]
    assert sorted(shards[0] + shards[1]) == sorted(first[:10])
    resumed = InfiniteSampler(10, seed=4, start=7)
    assert [i for _, i in zip(range(18), resumed, strict=False)] == first[7:25]
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(10, rank=2, world=2)


def test_sampler_blocks_give_every_step_the_same_global_batch():
    """Two ranks with blocks of 3 read the positions one rank reads, in runs of 3, from any start."""
    first = [i for _, i in zip(range(24), InfiniteSampler(10, seed=4), strict=False)]
    ranks = [InfiniteSampler(10, rank=r, world=2, seed=4, block=3) for r in range(2)]
    shards = [[i for _, i in zip(range(6), s, strict=False)] for s in ranks]
    assert shards[0][:3] + shards[1][:3] + shards[0][3:] + shards[1][3:] == first[:12]
    resumed = InfiniteSampler(10, rank=1, world=2, seed=4, start=3, block=3)
    assert [i for _, i in zip(range(3), resumed, strict=False)] == shards[1][3:]
    with pytest.raises(ValueError, match="block"):
        InfiniteSampler(10, block=0)


def test_grayscale_masks_of_another_size_are_resized(tmp_path):
    root = make_dataset(tmp_path, mask_res=64)
    item = HeadsDataset(root, background="white")[0]
    assert item["mask"].shape == (1, RES, RES)
    assert item["image"][:, 5, 2].tolist() == [0, 100, 200] and item["image"][:, 5, 13].tolist() == [255] * 3


def test_works_with_a_dataloader(ffhqc):
    loader = torch.utils.data.DataLoader(HeadsDataset(ffhqc), batch_size=4, sampler=InfiniteSampler(6))
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, RES, RES) and batch["label"].shape == (4, 25)


# ------------------------------------------------------------ check
def relabel(root: Path, index: int, value) -> None:
    data = json.loads((root / "dataset.json").read_text())
    data["labels"][index][1] = value
    (root / "dataset.json").write_text(json.dumps(data))


def messages(path, **kwargs) -> list[str]:
    return [str(p) for p in scan(path, **kwargs).problems]


def test_a_clean_dataset_has_no_problems(ffhqc):
    assert messages(ffhqc, decode=True) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda root, images: (images / "00005.png").unlink(), "00005.png: label for an image that is not there"),
        (lambda root, images: relabel(root, 1, [1.0] * 24), "00001.png: label has 24 numbers, expected 25"),
        (lambda root, images: relabel(root, 1, [float("nan")] + labels_for(6)[1][1:]), "non-finite"),
        (lambda root, images: relabel(root, 1, [2.0] + labels_for(6)[1][1:]), "rotation is not orthonormal"),
        (lambda root, images: (images / "00002.png").write_bytes(b"not an image"), "00002.png: unreadable"),
        (
            lambda root, images: write_png(images / "00003.png", np.zeros((8, 8, 3), np.uint8)),
            "00003.png: image is 8x8, expected 16x16",
        ),
        (
            lambda root, images: write_png(images / "00003.png", np.zeros((16, 12, 3), np.uint8)),
            "00003.png: image is 12x16, not square",
        ),
        (
            lambda root, images: write_png(root / "mask" / "00004.png", np.zeros((8, 8, 3), np.uint8)),
            "colour mask is 8x8 but its image is 16x16",
        ),
        (lambda root, images: (root / "mask" / "00004.png").unlink(), "00004.png: no mask"),
        (
            lambda root, images: write_png(images / "00009.png", np.zeros((16, 16, 3), np.uint8)),
            "00009.png: no label in dataset.json",
        ),
        (lambda root, images: (root / "dataset.json").write_text("{"), "dataset.json: unreadable"),
    ],
)
def test_check_names_every_problem_with_its_file(tmp_path, breakage, expected):
    images = make_dataset(tmp_path)
    breakage(tmp_path, images)
    found = messages(images)
    assert any(expected in m for m in found), found
    with pytest.raises(DatasetError, match="problem"):
        HeadsDataset(images)


def truncate(path: Path) -> None:
    """Cut a PNG 4 bytes into its pixel data, leaving the header whole."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"IDAT") + 8])


def test_truncated_images_are_found_when_decoding(ffhqc, tmp_path):
    truncate(ffhqc / "00001.png")
    truncate(tmp_path / "mask" / "00003.png")
    found = messages(ffhqc, decode=True)
    assert any("00001.png: unreadable or truncated" in m for m in found), found
    assert any("mask/00003.png: unreadable or truncated" in m for m in found), found
    assert messages(ffhqc) == []  # the headers are intact: the quick scan cannot tell


class CountingFile:
    """A file object that adds the bytes read through it to ``counter[0]``."""

    def __init__(self, file, counter: list[int]) -> None:
        self.file, self.counter = file, counter

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.counter[0] += len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "zip"])
def test_the_quick_scan_reads_only_headers(tmp_path, monkeypatch, packed):
    images = make_dataset(tmp_path)
    noise = np.random.default_rng(1)
    files = sorted(images.glob("*.png")) + sorted((tmp_path / "mask").glob("*.png"))
    for path in files:  # incompressible 96^2 noise: files of ~28 KB (images) and ~9 KB (masks)
        write_png(path, noise.integers(0, 256, (96, 96, 3) if path.parent == images else (96, 96), np.uint8))
    total = sum(path.stat().st_size for path in files)
    if packed:
        images = tmp_path / "heads.zip"
        with zipfile.ZipFile(images, "w") as z:
            for path in files:
                z.write(path, path.relative_to(tmp_path / str(RES) if path.parent.name == str(RES) else tmp_path))
            z.write(tmp_path / "dataset.json", "dataset.json")
    counter, whole = [0], []
    real_open, real_read = Source.open, Source.read
    monkeypatch.setattr(Source, "open", lambda self, name: CountingFile(real_open(self, name), counter))
    monkeypatch.setattr(Source, "read", lambda self, name: whole.append(name) or real_read(self, name))

    catalog = scan(images)
    assert catalog.problems == [] and catalog.resolution == 96 and len(catalog.entries) == 6
    assert whole == ["dataset.json"]  # no image or mask is read whole
    assert counter[0] < total / 50, (counter[0], total)
    counter[0] = 0
    assert scan(images, decode=True).problems == []
    assert counter[0] >= total  # the full check decodes everything


def test_an_image_broken_after_the_check_raises_naming_it(ffhqc):
    data = HeadsDataset(ffhqc)
    truncate(ffhqc / "00002.png")
    with pytest.raises(DatasetError, match=r"00002\.png: unreadable or truncated image"):
        data[2]
    assert data[1]["skipped"] == 0 and data[3]["skipped"] == 0
    write_png(ffhqc / "00004.png", np.zeros((RES * 2, RES * 2, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"00004\.png: image is 32x32, expected 16x16"):
        data[4]


def test_skip_passes_over_unreadable_images_and_masks_with_a_warning(ffhqc, tmp_path):
    data = HeadsDataset(ffhqc, on_error="skip", background="white")
    truncate(ffhqc / "00002.png")
    truncate(tmp_path / "mask" / "00005.png")
    with pytest.warns(BadImageWarning, match=r"skipped .*00002\.png: unreadable or truncated image") as caught:
        item = data[2]
    assert len(caught) == 1
    assert item["number"] == 3 and item["skipped"] == 1
    assert torch.equal(item["image"], data[3]["image"]) and torch.equal(item["label"], data[3]["label"])
    with pytest.warns(BadImageWarning, match=r"skipped .*mask/00005\.png"):
        assert data[5]["number"] == 0  # the next index wraps to the first image
    for clone in (copy.copy(data), pickle.loads(pickle.dumps(data))):  # the trainer copies; workers unpickle
        with pytest.warns(BadImageWarning, match="00002"):
            assert clone[2]["skipped"] == 1
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    with pytest.warns(BadImageWarning):
        batch = next(iter(loader))
    assert batch["skipped"].sum() == 2 and batch["skipped"].tolist() == [0, 0, 1, 0, 0, 1]
    assert batch["number"].tolist() == [0, 1, 3, 3, 4, 0]


def test_skip_gives_up_when_nothing_is_readable(ffhqc):
    data = HeadsDataset(ffhqc, on_error="skip")
    for path in ffhqc.glob("*.png"):
        truncate(path)
    with pytest.warns(BadImageWarning), pytest.raises(DatasetError, match="none of the 6 items is readable"):
        data[0]
    with pytest.raises(ValueError, match="on_error"):
        HeadsDataset(ffhqc, on_error="ignore")


def test_distribution_indices_out_of_range_are_reported(ffhqc):
    assert any("not in the dataset: 7, 8" in m for m in messages(ffhqc, distribution=[1, 7, 8]))


def test_missing_dataset_json_and_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    found = messages(tmp_path / "empty")
    assert any("no images" in m for m in found) and any("dataset.json not found" in m for m in found)
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "nowhere")


def test_fingerprint_follows_images_masks_and_labels(tmp_path):
    images = make_dataset(tmp_path)
    first = scan(images).fingerprint()
    assert scan(images).fingerprint() == first
    os.utime(tmp_path / "mask" / "00002.png", ns=(0, 10**18))
    after_mask = scan(images).fingerprint()
    assert after_mask != first
    write_png(images / "00003.png", np.zeros((RES, RES, 3), np.uint8))
    after_image = scan(images).fingerprint()
    assert after_image != after_mask
    labels = json.loads((tmp_path / "dataset.json").read_text())
    labels["labels"][1][1][3] += 0.5
    (tmp_path / "dataset.json").write_text(json.dumps(labels))
    assert scan(images).fingerprint() != after_image


def test_fingerprint_of_a_zip_uses_its_crcs(tmp_path):
    folder = make_dataset(tmp_path / "a", layout="eg3d")
    archive = tmp_path / "data.zip"

    def pack() -> str:
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(folder).as_posix())
        return scan(archive).fingerprint()

    first = pack()
    os.utime(folder / "00000" / "img00000001.png", ns=(0, 10**18))
    assert pack() == first  # a new archive of the same bytes: same CRCs
    write_png(folder / "00000" / "img00000001.png", np.zeros((RES, RES, 3), np.uint8))
    assert pack() != first
