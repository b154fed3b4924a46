"""Using a network: seeds, heads, ``cgsgan generate``, ``cgsgan video`` and ``cgsgan info``."""

from __future__ import annotations

import importlib.util
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cgsgan.apps import heads as heads_module
from cgsgan.apps.generate import GRID_YAWS, generate_files
from cgsgan.apps.heads import generate, level_ranges, open_network, parse_seeds, seed_latents
from cgsgan.apps.info import describe
from cgsgan.apps.video import camera_path, interpolated_ws, make_video
from cgsgan.camera import camera_positions, camera_yaw_deg
from cgsgan.cli import main
from cgsgan.io import read_ply, read_splat

HAS_FFMPEG = importlib.util.find_spec("imageio_ffmpeg") is not None


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def G():
    return open_network(None)


# ------------------------------------------------------------------- seeds
def test_parse_seeds_ranges_and_lists():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("10, 2-3") == [10, 2, 3]
    assert parse_seeds(5) == [5]
    assert parse_seeds([4, 2]) == [4, 2]
    assert parse_seeds(f"{2**32 - 1}") == [2**32 - 1]


@pytest.mark.parametrize(
    "text, message",
    [("x", "'x' is not a seed"), ("3-1", "runs backwards"), ("-1", "is not a seed"), ("1,1", "listed twice"),
     ("", "is not a seed"), (str(2**32), "must be in 0.."), ("0-100000", "more than"), ("1.5", "is not a seed")],
)  # fmt: skip
def test_parse_seeds_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_seed_latents_follow_the_stylegan_convention():
    # np.random.RandomState(0).randn(...) starts 1.76405235, 0.40015721, 0.97873798 (NumPy's documented stream).
    z = seed_latents([0, 1], 512)
    assert z.shape == (2, 512) and z.dtype == torch.float32
    assert z[0, :3].tolist() == pytest.approx([1.76405235, 0.40015721, 0.97873798], abs=1e-6)
    assert z[1, 0].item() == pytest.approx(1.62434536, abs=1e-6)  # RandomState(1)


# ------------------------------------------------------------------- heads
def test_generate_maps_once_and_keeps_seed_order(G):
    heads = generate(G, [3, 1], truncation=0.7)
    assert heads.seeds == [3, 1]
    z = seed_latents([3, 1], G.cfg.z_dim)
    assert torch.equal(heads.z, z)
    with torch.no_grad():
        ws = G.mapping(z, truncation_psi=0.7)
        scene = G.synthesis(ws)[0]
    assert torch.equal(heads.ws, ws)
    assert torch.allclose(heads.scene.xyz, scene.xyz)
    one = generate(G, [1], truncation=0.7)
    assert torch.allclose(one.scene.xyz[0], heads.scene.xyz[1], atol=1e-6)  # batching does not change a head


def test_truncation_is_applied_once(G):
    # StyleGAN truncation: w = w_avg + psi (w_1 - w_avg), w_1 the untruncated w; once, not twice.
    z = seed_latents([7], G.cfg.z_dim)
    with torch.no_grad():
        w1 = G.mapping(z, truncation_psi=1.0)
    expected = G.mapping_network.w_avg + 0.5 * (w1 - G.mapping_network.w_avg)
    assert torch.allclose(generate(G, [7], truncation=0.5).ws, expected, atol=1e-5)


def test_parse_seeds_is_fast_on_long_lists():
    with pytest.raises(ValueError, match="seed 0 is listed twice"):
        parse_seeds("1-99998,0,0")  # linear time: a quadratic search took minutes here
    assert len(parse_seeds("0-99999")) == 100_000


def test_truncation_zero_gives_the_average_head(G):
    heads = generate(G, [0, 1], truncation=0.0)
    assert torch.allclose(heads.scene.xyz[0], heads.scene.xyz[1])
    assert torch.allclose(heads.ws[0, 0], G.mapping_network.w_avg)
    differ = generate(G, [0, 1], truncation=1.0)
    assert not torch.allclose(differ.scene.xyz[0], differ.scene.xyz[1])


def test_generate_rejects_bad_arguments(G):
    with pytest.raises(ValueError, match="either seeds or z"):
        generate(G)
    with pytest.raises(ValueError, match="truncation"):
        generate(G, [0], truncation=float("nan"))
    with pytest.raises(ValueError, match=r"z must have shape \[B, 128\]"):
        generate(G, z=torch.zeros(2, 3))


def test_level_ranges_of_the_builtin_network(G):
    # tiny64: 256 points, 3 levels with 1, 4 and 16 Gaussians per point.
    assert level_ranges(G.cfg) == [(0, 256), (256, 1280), (1280, 5376)]
    assert generate(G, [0]).scene.num_gaussians == 5376


def test_open_network_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_network(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- generate
def test_generate_files_writes_everything_asked_for(G, tmp_path):
    formats = ("grid", "turntable", "ply", "splat", "npz")
    paths = generate_files(None, "4,2", tmp_path, truncation=0.6, formats=formats, resolution=16)
    assert set(paths) == set(formats)
    assert [p.name for p in paths["ply"]] == ["seed0004.ply", "seed0002.ply"]
    heads = generate(G, [4, 2], truncation=0.6)
    for i, path in enumerate(paths["ply"]):
        scene = read_ply(path)
        for name, value in scene.tensors().items():
            assert torch.equal(value, getattr(heads.scene[i], name)), name
    assert read_splat(paths["splat"][1]).num_gaussians == 5376
    grid = iio.imread(paths["grid"][0])
    assert grid.shape == (2 * 16, len(GRID_YAWS) * 16, 3)
    assert (grid < 250).any(axis=-1).mean() > 0.05  # heads drawn, not just the white background
    turntable = iio.imread(paths["turntable"][0], index=None)
    assert turntable.shape == (48, 16, 2 * 16, 3)
    latent = np.load(paths["npz"][0])
    assert latent["z"].shape == (1, G.cfg.z_dim) and latent["w"].shape == (1, G.cfg.num_ws, G.cfg.w_dim)
    assert int(latent["seed"]) == 4 and float(latent["truncation_psi"]) == pytest.approx(0.6)
    assert np.array_equal(latent["z"], seed_latents([4], G.cfg.z_dim).numpy())
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left


def test_generate_files_compressed_formats_and_frame(G, tmp_path):
    from cgsgan.apps.files import read_scene
    from cgsgan.io import read_spz_header

    paths = generate_files(None, "3", tmp_path, formats="spz,compressed-ply", spz_version=3, up="-y")
    assert [p.name for p in paths["compressed-ply"]] == ["seed0003.compressed.ply"]
    assert read_spz_header(paths["spz"][0]).version == 3
    head = generate(G, [3]).scene
    for path in (paths["spz"][0], paths["compressed-ply"][0]):
        back = read_scene(path, up="-y")  # stored y down; read back into our frame
        # compressed PLY reorders the Gaussians (by chunk): compare each with its nearest
        nearest = torch.cdist(back.xyz[0], head.xyz[0]).min(dim=1).values
        assert back.num_gaussians == 5376 and nearest.max() < 1e-3  # within both formats' position steps
        flipped = read_scene(path)  # read as if y up: upside down
        assert torch.allclose(flipped.xyz[..., 1], -back.xyz[..., 1], atol=1e-6)


def test_grid_and_turntable_show_the_first_16_seeds(tmp_path):
    paths = generate_files(None, "0-16", tmp_path, formats="grid,ply", resolution=8)
    assert iio.imread(paths["grid"][0]).shape == (16 * 8, 7 * 8, 3)
    assert len(paths["ply"]) == 17 and paths["ply"][-1].name == "seed0016.ply"


def test_grid_columns_are_the_reference_yaws():
    assert [round(y / math.pi, 6) for y in GRID_YAWS] == [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]


def test_generate_files_checks_before_running(tmp_path, monkeypatch):
    monkeypatch.setattr(heads_module, "load_network", lambda *a, **k: pytest.fail("network loaded"))
    with pytest.raises(ValueError, match="unknown format 'jpg'"):
        generate_files(None, "0", tmp_path, formats="ply,jpg")
    with pytest.raises(ValueError, match="spz_version must be 2 or 3"):
        generate_files(None, "0", tmp_path, spz_version=4)
    with pytest.raises(ValueError, match="up must be"):
        generate_files(None, "0", tmp_path, up="z")


# ------------------------------------------------------------------- video
def test_orbit_and_sweep_cameras():
    orbit = camera_path("orbit", 8, pitch=0.1)
    yaw = camera_yaw_deg(orbit)
    assert yaw[0].item() == pytest.approx(0, abs=1e-4) and yaw[2].item() == pytest.approx(90, abs=1e-4)
    assert camera_positions(orbit).norm(dim=-1) == pytest.approx(torch.full((8,), 2.7), abs=1e-5)
    height = camera_positions(orbit)[:, 1]
    # EG3D's LookAtPoseSampler: phi = arccos(1 - 2 pitch / pi), y = r cos(phi): below level for pitch > pi/2.
    assert torch.allclose(height, torch.full((8,), 2.7 * (1 - 2 * (math.pi / 2 + 0.1) / math.pi)), atol=1e-5)
    sweep = camera_yaw_deg(camera_path("sweep", 40, yaw_range=0.3))
    assert sweep.abs().max().item() == pytest.approx(math.degrees(0.3), abs=0.1)
    with pytest.raises(ValueError, match="orbit, sweep"):
        camera_path("spiral", 4)


def test_interpolation_passes_through_every_seed_and_loops():
    ws = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 4)
    frames = interpolated_ws(ws, 12)  # 4 frames a leg
    assert frames.shape == (12, 2, 4)
    assert [frames[t, 0, 0].item() for t in (0, 4, 8)] == [0, 1, 2]
    assert frames[2, 0, 0].item() == pytest.approx(0.5)  # halfway along the first leg
    assert frames[10, 0, 0].item() == pytest.approx(1.0)  # last leg runs 2 -> 0


@pytest.mark.skipif(not HAS_FFMPEG, reason="needs imageio-ffmpeg (the video extra)")
def test_mp4_has_the_requested_frames_and_size(tmp_path):
    out = make_video(None, [0, 1], tmp_path / "v.mp4", frames=6, seconds=0.5, resolution=24)
    frames = iio.imread(out, index=None, plugin="pyav") if importlib.util.find_spec("av") else iio.imread(out)
    assert frames.shape == (6, 24, 48, 3)
    assert iio.immeta(out)["fps"] == pytest.approx(12)


def test_interpolation_video_starts_at_the_first_seed(G, tmp_path):
    out = make_video(None, [0, 1], tmp_path / "m.gif", frames=4, resolution=24, interp=True)
    frames = iio.imread(out, index=None)
    assert frames.shape == (4, 24, 24, 3)
    still = make_video(None, [0], tmp_path / "s.gif", frames=4, resolution=24)
    diff = np.abs(frames[0].astype(int) - iio.imread(still, index=0).astype(int))
    assert diff.mean() <= 1 and diff.max() <= 16  # GIF palette rounding moves a few pixels to a neighbouring colour
    assert np.abs(frames[2].astype(int) - frames[0].astype(int)).max() > 20  # seed 1 shows up


def test_video_without_ffmpeg_says_how_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "imageio_ffmpeg" else real(n))
    result = invoke("video", "--out", tmp_path / "v.mp4", "--frames", 2)
    assert_clean_error(result, 'pip install "cgsgan[video]"')
    assert not (tmp_path / "v.mp4").exists()


def test_video_command_angles_are_degrees(G, tmp_path):
    from cgsgan.apps.files import render_file

    out = tmp_path / "v.gif"
    result = invoke("video", "--seeds", 4, "--frames", 2, "--resolution", 24, "--yaw", 90, "--pitch", -10, "--out", out)
    assert result.exit_code == 0, result.output
    ply = generate_files(None, "4", tmp_path, formats="ply")["ply"][0]
    still = render_file(ply, tmp_path / "still.png", resolution=24, yaw=math.pi / 2, pitch=math.radians(-10),
                        progress=False)[0]  # fmt: skip
    frame = iio.imread(out, index=0).astype(int)
    diff = np.abs(frame - iio.imread(still).astype(int))
    # GIF palette rounding: an adaptive 256-colour palette moves a few pixels of a busy frame by up to ~30
    assert diff.mean() <= 1 and np.quantile(diff, 0.99) <= 16 and diff.max() <= 48


def test_video_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="must end in .mp4 or .gif"):
        make_video(None, [0], tmp_path / "v.avi")
    with pytest.raises(ValueError, match="at least two seeds"):
        make_video(None, [0], tmp_path / "v.gif", interp=True)
    assert_clean_error(invoke("video", "--seeds", "0", "--interp", "1,2"), "not both")
    assert_clean_error(invoke("video", "--interp", "3"), "at least two seeds")


# -------------------------------------------------------------------- info
def test_info_of_the_builtin_network_and_a_scene(tmp_path):
    from cgsgan.assets import default_network

    rows = dict(describe(default_network()).rows)
    assert rows["preset"] == "tiny64" and rows["Gaussians"].startswith("5,376") and rows["networks"] == "G_ema"
    paths = generate_files(None, "0", tmp_path, formats="ply")
    info = describe(paths["ply"][0])
    assert info.kind == "scene" and dict(info.rows)["Gaussians"] == "5,376"
    assert "Gaussians" in str(info)


def test_info_of_a_dataset(tmp_path):
    from cgsgan.camera import look_at

    yaws = torch.tensor([math.pi / 2 - 0.5, math.pi / 2, math.pi / 2 + 0.25], dtype=torch.float64)
    labels = look_at(yaws, math.pi / 2, 2.7, dtype=torch.float64)
    names = [f"{i:05d}.png" for i in range(3)]
    for name in names:
        iio.imwrite(tmp_path / name, np.zeros((16, 16, 3), np.uint8))
    entries = [[n, row.tolist()] for n, row in zip(names, labels, strict=True)]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": entries}))
    info = describe(tmp_path)
    rows = dict(info.rows)
    assert info.kind == "dataset" and rows["images"] == "3" and rows["resolution"] == "16 px"
    assert rows["yaw"].startswith(f"{-math.degrees(0.5):.2f} .. {math.degrees(0.25):.2f} deg")
    assert rows["radius"].startswith("2.70 .. 2.70") and rows["masks"] == "0"


def test_info_of_a_run_folder(tmp_path):
    run = tmp_path / "00000-tiny64-synth"
    run.mkdir()
    entry = {"network": "network-snapshot-000004.safetensors", "state": None, "step": 500, "images": 4000}
    (run / "snapshots.json").write_text(json.dumps({"snapshots": [entry]}))
    rows = dict(describe(run).rows)
    assert rows["snapshots"] == "1" and "4.0 kimg" in rows["newest"]


def test_info_rejects_other_files(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert_clean_error(invoke("info", other), "not a network")
    assert_clean_error(invoke("info", tmp_path), "without dataset.json")
    assert_clean_error(invoke("info", tmp_path / "missing.ply"), "does not exist")


# --------------------------------------------------------------------- cli
@pytest.mark.parametrize("command", ["generate", "video", "view", "export", "info"])
def test_help_has_examples(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Examples:" in result.output and f"cgsgan {command}" in result.output


def test_generate_command(tmp_path):
    result = invoke("generate", "--seeds", "0-2", "--formats", "grid,ply", "--outdir", tmp_path, "--resolution", 16)
    assert result.exit_code == 0, result.output
    assert "wrote 3 ply files" in result.output and (tmp_path / "seed0002.ply").is_file()
    assert iio.imread(tmp_path / "grid.png").shape == (48, 112, 3)


def test_generate_command_errors(tmp_path):
    assert_clean_error(invoke("generate", "--seeds", "0-x"), "'0-x' is not a seed")
    assert_clean_error(invoke("generate", "--network", tmp_path / "no.safetensors"), "no.safetensors")
    assert_clean_error(invoke("generate", "--formats", "png", "--outdir", tmp_path), "unknown format 'png'")
    notnet = tmp_path / "head.safetensors"
    notnet.write_bytes(b"not a checkpoint")
    assert_clean_error(invoke("generate", "--network", notnet, "--outdir", tmp_path), "not a readable safetensors")


# -------------------------------------------------------------------- view
def test_view_help_and_errors(tmp_path):
    import socket

    pytest.importorskip("viser")
    result = invoke("view", "--help")
    assert result.exit_code == 0 and "cgsgan view out/generate/seed0000.ply" in result.output
    mesh = tmp_path / "mesh.ply"  # a PLY that is not a 3DGS scene
    mesh.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    assert_clean_error(invoke("view", mesh, "--port", 0), "lacks required properties")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_clean_error(invoke("view", "--port", port), f"port {port}", "already in use")
    assert_clean_error(invoke("view", mesh, "--network", mesh), "--network applies to a network, not to FILE")
    assert_clean_error(invoke("view", mesh, "--seed", 3, "--trunc", 0.5), "--seed, --trunc apply to a network")
    assert_clean_error(invoke("view", mesh, "--precision", "float16"), "--precision applies to a network")


# ------------------------------------------------------------------ export
def test_export_mesh_command(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    pytest.importorskip("skimage")
    result = invoke("export", "--seed", 2, "--mesh", tmp_path / "head.glb", "--mesh-resolution", 48)
    assert result.exit_code == 0, result.output
    mesh = trimesh.load(tmp_path / "head.glb", force="mesh")
    assert len(mesh.faces) > 100 and mesh.is_watertight
    paths = generate_files(None, "2", tmp_path, formats="ply")
    result = invoke("export", paths["ply"][0], "--mesh", tmp_path / "file.obj", "--mesh-resolution", 48)
    assert result.exit_code == 0, result.output
    from_file = trimesh.load(tmp_path / "file.obj", force="mesh")
    assert np.allclose(from_file.bounds, mesh.bounds, atol=1e-4)  # the same head, from the network or its PLY


def test_export_command_errors(tmp_path):
    assert_clean_error(invoke("export", "--mesh", tmp_path / "head.stl"), "must end in .glb, .obj, .ply")
    assert_clean_error(invoke("export", "--mesh", tmp_path / "h.obj", "--mesh-components", "0"), "'all'")
    assert_clean_error(invoke("export"), "Missing option '--mesh'")
    ply = generate_files(None, "0", tmp_path, formats="ply")["ply"][0]
    assert_clean_error(invoke("export", ply, "--network", ply, "--mesh", tmp_path / "h.obj"), "--network applies")
    assert_clean_error(invoke("export", ply, "--seed", 1, "--mesh", tmp_path / "h.obj"), "--seed applies")
    assert_clean_error(invoke("export", ply, "--mesh", ply), "would overwrite FILE")
    assert ply.read_bytes()[:3] == b"ply" and read_ply(ply).num_gaussians == 5376  # untouched
    assert_clean_error(invoke("export", "--mesh", tmp_path / "h.obj", "--device", "nope"), "must be a torch device")
    if not torch.cuda.is_available():
        assert_clean_error(invoke("export", "--mesh", tmp_path / "h.obj", "--device", "cuda"), "CUDA is not available")


def test_generate_from_our_checkpoint_and_a_run_folder(G, tmp_path):
    from cgsgan.io import save_networks

    run = tmp_path / "00000-tiny64-synth"
    save_networks(run / "network-snapshot-000010.safetensors", {"G_ema": G}, G.cfg)
    for network in (run / "network-snapshot-000010.safetensors", run):
        out = tmp_path / network.name
        result = invoke("generate", "--network", network, "--seeds", "5", "--formats", "ply", "--outdir", out)
        assert result.exit_code == 0, result.output
        assert torch.equal(read_ply(out / "seed0005.ply").xyz, generate(G, [5]).scene.xyz)


# -------------------------------------------------------------- synthesis speed
def test_reduced_precision_stays_close_to_float32(G):
    from cgsgan.camera import look_at
    from cgsgan.render import render

    labels = look_at(math.pi / 2, math.pi / 2).expand(4, -1)
    exact = render(generate(G, [0, 1, 2, 3]).scene, labels, 64, background=1.0).image
    half = generate(G, [0, 1, 2, 3], precision="bfloat16")
    assert half.scene.dtype == torch.float32 and half.ws.dtype == torch.float32
    image = render(half.scene, labels, 64, background=1.0).image
    psnr = 10 * math.log10(1 / (image - exact).square().mean().item())
    assert psnr > 33  # the README's figure for the built-in network: about 39 dB
    with pytest.raises(ValueError, match="precision must be one of"):
        generate(G, [0], precision="int8")


def test_synthesis_benchmark_smoke():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "benchmarks/synthesis.py", "--smoke"], cwd=root, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| tiny64")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "5,376" and cells[3] == "float32" and float(cells[4]) > 0  # Gaussians, precision, FPS


def test_compiled_synthesis_gives_the_eager_scenes(G):
    from cgsgan.apps.heads import Synthesizer

    compiled = Synthesizer(G, compile=True)
    heads = generate(G, [0, 1, 2], batch=2, synthesizer=compiled)  # chunks of 2 and 1: the 1 is padded
    eager = generate(G, [0, 1, 2])
    assert heads.scene.batch_size == 3 and compiled.batch == 2
    # Compiled kernels sum in another order: on a CPU with AVX-512 the logits (up to 13) differ by up to 7e-5;
    # two heads swapped differ by 0.04 (positions) to 7 (opacity logits).
    for name, value in eager.scene.tensors().items():
        assert torch.allclose(getattr(heads.scene, name), value, rtol=1e-4, atol=5e-4), name
    # Any later size runs in chunks of 2, the last padded: nothing compiles again.
    ws = G.mapping(torch.randn(5, G.cfg.z_dim, generator=torch.Generator().manual_seed(1)))
    with torch._dynamo.config.patch(error_on_recompile=True):
        five, one = compiled(ws), compiled(ws[:1])
    plain = Synthesizer(G)
    torch.testing.assert_close(five.xyz, plain(ws).xyz, atol=1e-5, rtol=0)
    torch.testing.assert_close(one.xyz, plain(ws[:1]).xyz, atol=1e-5, rtol=0)
    assert five.batch_size == 5 and one.batch_size == 1


def test_synthesizer_options():
    from cgsgan.config import generator_config
    from cgsgan.models import build_generator
    from cgsgan.models.synthesizer import Synthesizer, compile_mode

    G = build_generator(generator_config("tiny64"))
    assert compile_mode("cuda:1") == "reduce-overhead" and compile_mode("cpu") == "default"
    assert Synthesizer(G, compile=True).mode == "default" and Synthesizer(G).mode is None
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, float16"):
        Synthesizer(G, precision="half")
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        Synthesizer(G, compile=True, batch=0)
    scene = Synthesizer(G, precision="bfloat16")(G.mapping(torch.randn(2, G.cfg.z_dim)))
    assert scene.xyz.dtype == torch.float32 and not scene.xyz.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_synthesis_gives_the_eager_scenes():
    """On CUDA the compiled generator is a CUDA graph; its outputs are copies, not the graph's reused memory."""
    from cgsgan.io import load_network
    from cgsgan.models.synthesizer import Synthesizer

    G = load_network(device="cuda")
    ws = G.mapping(torch.randn(3, G.cfg.z_dim, device="cuda"))
    synthesize = Synthesizer(G, compile=True, batch=1)
    assert synthesize.mode == "reduce-overhead"
    scenes = [synthesize(ws[i : i + 1]) for i in range(3)]  # each replay would overwrite the last one's outputs
    eager = Synthesizer(G)(ws)
    for i, scene in enumerate(scenes):
        torch.testing.assert_close(scene.xyz, eager.xyz[i : i + 1], atol=1e-4, rtol=0)
