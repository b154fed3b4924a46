"""The ``cgsgan`` command line (click) and the apps functions behind it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
from click.testing import CliRunner

from cgsgan import __version__
from cgsgan.apps import convert_file, render_file
from cgsgan.cli import main
from cgsgan.io import read_ply, read_splat

COMMANDS = ("generate", "video", "view", "export", "info", "demo", "render", "convert", "train", "metrics")
DEMO_COUNT = 20000  # demo_head's default


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A demo run at 64 px with 3 views (shared by the render and convert tests)."""
    out = tmp_path_factory.mktemp("demo")
    result = invoke("demo", "--out", out, "--resolution", 64, "--views", 3)
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------- help/version
def test_group_help_lists_commands_with_examples():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "Examples" in result.output and "cgsgan demo" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output
    assert f"cgsgan {command} " in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "cgsgan", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage: cgsgan" in result.stdout


# ------------------------------------------------------------------------ demo
def test_demo_writes_grid_ply_splat(demo_dir):
    grid = iio.imread(demo_dir / "demo_grid.png")
    assert grid.shape == (64, 3 * 64, 3) and grid.dtype.name == "uint8"
    assert grid[0, 0].tolist() == [255, 255, 255]  # white background
    assert grid[32, 32].mean() < 200  # the head in the middle of the first view
    assert read_ply(demo_dir / "demo_head.ply").num_gaussians == DEMO_COUNT
    assert (demo_dir / "demo_head.splat").stat().st_size == 32 * DEMO_COUNT


def test_demo_reports_paths(tmp_path):
    result = invoke("demo", "--out", tmp_path, "--resolution", 16, "--views", 1, "--up", "-y")
    assert result.exit_code == 0, result.output
    assert "demo_grid.png" in result.output and "demo_head.ply" in result.output
    assert iio.imread(tmp_path / "demo_grid.png").shape == (16, 16, 3)


@pytest.mark.parametrize("option", ["--resolution", "--views"])
def test_demo_rejects_non_positive(option, tmp_path):
    result = invoke("demo", "--out", tmp_path, option, 0)
    assert result.exit_code != 0
    assert option in result.output


# ---------------------------------------------------------------------- render
def test_render_png(demo_dir, tmp_path):
    out = tmp_path / "front.png"
    result = invoke("render", demo_dir / "demo_head.ply", "--out", out, "--resolution", 48, "--yaw", 20)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    image = iio.imread(out)
    assert image.shape == (48, 48, 3)
    assert image[24, 24].mean() < 200 and image[0, 0].tolist() == [255, 255, 255]


def test_render_splat_black_background(demo_dir, tmp_path):
    out = tmp_path / "side.png"
    args = ("--out", out, "--resolution", 32, "--background", "black", "--pitch", -10, "--up", "y")
    result = invoke("render", demo_dir / "demo_head.splat", *args)
    assert result.exit_code == 0, result.output
    assert iio.imread(out)[0, 0].tolist() == [0, 0, 0]


def test_render_turntable_folder_and_gif(demo_dir, tmp_path):
    result = invoke("render", demo_dir / "demo_head.ply", "--out", tmp_path / "turn", "--resolution", 24, "--frames", 3)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "turn").iterdir()) == [f"frame_{i:04d}.png" for i in range(3)]
    gif = tmp_path / "turn.gif"
    result = invoke("render", demo_dir / "demo_head.ply", "--out", gif, "--resolution", 24, "--frames", 3)
    assert result.exit_code == 0, result.output
    assert iio.imread(gif, index=None).shape == (3, 24, 24, 3)


def test_render_mp4_without_writer_says_how_to_install(demo_dir, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "imageio_ffmpeg" else real(name))
    result = invoke("render", demo_dir / "demo_head.ply", "--out", tmp_path / "t.mp4", "--frames", 2)
    assert result.exit_code != 0
    assert 'pip install "cgsgan[video]"' in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "t.mp4").exists()


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="needs the video extra")
def test_render_mp4_of_odd_size(demo_dir, tmp_path):
    out = tmp_path / "t.mp4"
    result = invoke("render", demo_dir / "demo_head.ply", "--out", out, "--frames", 3, "--resolution", 15)
    assert result.exit_code == 0, result.output
    assert iio.imread(out, index=None).shape == (3, 16, 16, 3)  # padded to even sizes for yuv420p


def test_render_names_its_output_after_the_scene(demo_dir, tmp_path, monkeypatch):
    convert_file(demo_dir / "demo_head.ply", tmp_path / "head.compressed.ply")
    monkeypatch.chdir(tmp_path)
    result = invoke("render", "head.compressed.ply", "--resolution", 16)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "head.png").is_file()


def test_render_file_api(demo_dir, tmp_path):
    paths = render_file(demo_dir / "demo_head.ply", tmp_path, resolution=16, background=0.5, progress=False)
    assert paths == [tmp_path / "demo_head.png"]
    assert iio.imread(paths[0])[0, 0].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="head.obj"):
        render_file(tmp_path / "head.obj", tmp_path / "x.png")


# --------------------------------------------------------------------- convert
def test_convert_round_trip_keeps_count(demo_dir, tmp_path):
    splat, ply, compact = tmp_path / "head.splat", tmp_path / "back.ply", tmp_path / "compact.ply"
    assert invoke("convert", demo_dir / "demo_head.ply", splat).exit_code == 0
    assert invoke("convert", splat, ply).exit_code == 0
    assert read_splat(splat).num_gaussians == DEMO_COUNT
    assert read_ply(ply).num_gaussians == DEMO_COUNT
    result = invoke("convert", ply, compact, "--compact", "--up-out", "-y")
    assert result.exit_code == 0, result.output
    assert compact.stat().st_size < ply.stat().st_size / 3
    back = read_ply(compact, up="-y")
    assert back.num_gaussians == DEMO_COUNT
    assert back.xyz.sub(read_ply(ply).xyz).abs().max() < 1e-6


def test_convert_api_rejects_compact_splat(demo_dir, tmp_path):
    with pytest.raises(ValueError, match="compact"):
        convert_file(demo_dir / "demo_head.ply", tmp_path / "x.splat", compact=True)


# ---------------------------------------------------------------------- errors
def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_render_missing_file(tmp_path):
    assert_clean_error(invoke("render", tmp_path / "nope.ply"), "nope.ply", "does not exist")


def test_convert_missing_file(tmp_path):
    assert_clean_error(invoke("convert", tmp_path / "nope.splat", tmp_path / "x.ply"), "nope.splat", "does not exist")


def test_render_bad_extension(tmp_path):
    scene = tmp_path / "head.obj"
    scene.write_text("not a scene")
    assert_clean_error(invoke("render", scene), "head.obj", ".ply or .splat")


def test_convert_bad_output_extension(demo_dir, tmp_path):
    result = invoke("convert", demo_dir / "demo_head.ply", tmp_path / "head.txt")
    assert_clean_error(result, "head.txt", ".ply or .splat")


def test_convert_compact_needs_ply_output(demo_dir, tmp_path):
    result = invoke("convert", demo_dir / "demo_head.ply", tmp_path / "x.splat", "--compact")
    assert_clean_error(result, "--compact")


@pytest.mark.parametrize("colour", ["purple", "1,1", "1,0,x", "-1,0,0", "300,0,0"])
def test_render_bad_background(demo_dir, colour):
    result = invoke("render", demo_dir / "demo_head.ply", "--background", colour)
    assert_clean_error(result, "--background", colour)


def test_render_bad_resolution(demo_dir):
    assert_clean_error(invoke("render", demo_dir / "demo_head.ply", "--resolution", 0), "--resolution")


def test_render_corrupt_file_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat nonsense\n")
    assert_clean_error(invoke("render", bad, "--out", tmp_path / "x.png"), "broken.ply")


def test_render_frames_need_folder_or_video(demo_dir, tmp_path):
    result = invoke("render", demo_dir / "demo_head.ply", "--out", tmp_path / "x.png", "--frames", 2)
    assert_clean_error(result, "x.png", "folder")


def test_bad_device(tmp_path):
    assert_clean_error(invoke("demo", "--out", tmp_path, "--device", "banana"), "banana")
