"""Interactive web viewer for generated heads and 3DGS files, on viser.

    viewer = Viewer.from_network(None, seed=42)   # the built-in network; or a .safetensors / official .pkl
    print(viewer.url)                             # http://127.0.0.1:8080
    viewer.set_seed(7); viewer.set_levels(1)      # what the browser controls do
    viewer.export(".ply")                         # out/view/seed0007_levels0-0.ply
    viewer.stop()                                 # or: with Viewer.from_file("head.ply") as viewer: ...

    serve(None, seed=42)                          # the blocking forms used by ``cgsgan view``
    view("head.ply")

The page shows the head as Gaussian splats (viser sorts and draws them in
WebGL in the browser; nothing is rendered on the server, so no GPU is
needed). Its panel has:

- for a network: a seed, a truncation slider (0..1) and a choice of
  hierarchy levels (level 0 only, levels 0..1, ..., all Gaussians);
- camera presets on our orbit (radius 2.7, the dataset's field of view,
  y up): frontal and +-30 / +-60 degrees of yaw, applied to every
  connected browser (positive yaw = toward +x, as in ``cgsgan.camera``);
- an export section: the format (PLY, .spz, .splat, compressed PLY, whichever
  the installed ``cgsgan.apps.files`` writes) and a button that writes the head *as shown*
  (the selected levels) to the output folder, ``seed0042.ply`` when every
  level is shown and ``seed0042_levels0-1.ply`` otherwise (``<stem>.ply``
  for a file), and sends the same bytes to the browser as a download;
- a status line: Gaussians shown, generation time, the last export.

Networking: the server binds 127.0.0.1 by default. Any other host makes it
reachable from the network, which is warned about (UserWarning), since
whoever reaches it can also make it write files. viser, asked for a busy
port, silently moves to the next free one; here a busy port is refused
with :class:`PortInUseError` (an OSError naming the port and ``--port``),
so the printed URL is always the port asked for. Port 0 (or None) takes a
free port; :attr:`Viewer.port` tells which.

viser is optional: ``pip install "cgsgan[viewer]"``. It is imported only
when a viewer starts, so :func:`scene_to_splats` works without it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgsgan.apps import files
from cgsgan.apps.heads import Synthesizer, generate, level_ranges, open_network, parse_seeds
from cgsgan.camera import (
    DEFAULT_FOCAL,
    DEFAULT_RADIUS,
    FRONTAL_PITCH,
    FRONTAL_YAW,
    camera_positions,
    fov_from_focal,
    look_at,
)
from cgsgan.gaussians import GaussianScene

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_OUTDIR",
    "DEFAULT_PORT",
    "EXPORT_FORMATS",
    "PRESET_YAWS_DEG",
    "PortInUseError",
    "VIEWER_INSTALL_HINT",
    "Viewer",
    "preset_camera",
    "scene_to_splats",
    "serve",
    "view",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_OUTDIR = "out/view"
VIEWER_INSTALL_HINT = 'the viewer needs viser: pip install "cgsgan[viewer]"'
PRESET_YAWS_DEG = (-60, -30, 0, 30, 60)  # camera preset buttons, degrees of yaw from the front
# dropdown label -> suffix; those that cgsgan.apps.files.SCENE_SUFFIXES lacks are left out
EXPORT_FORMATS = {"PLY": ".ply", ".spz": ".spz", ".splat": ".splat", "compressed PLY": ".compressed.ply"}
SPLATS_NODE = "/head"
_TRUNCATION_STEP = 0.05


class PortInUseError(OSError):
    """The port asked for is taken; the message names it and suggests ``--port``."""


# ------------------------------------------------------------------ conversion
def scene_to_splats(scene: GaussianScene, index: int = 0) -> dict[str, np.ndarray]:
    """Sample ``index`` of ``scene`` as viser's splat arrays (float32 numpy).

    centers [N, 3]; covariances [N, 3, 3] = R S S R^T with R the rotation of
    the normalised quaternion and S = diag(exp(scale)); rgbs [N, 3], the
    degree-0 colours clipped to [0, 1]; opacities [N, 1], sigmoid(opacity).
    The covariances are computed in float64 before the cast.
    """
    sample = scene[index].detach().to("cpu", torch.float64)
    arrays = {
        "xyz": sample.xyz[0],
        "covariances": sample.covariances()[0],
        "rgbs": sample.rgb()[0],
        "opacities": sample.opacities()[0],
    }
    arrays = {k: v.numpy() for k, v in arrays.items()}
    return {
        "centers": arrays["xyz"].astype(np.float32),
        "covariances": arrays["covariances"].astype(np.float32),
        "rgbs": np.clip(arrays["rgbs"], 0.0, 1.0).astype(np.float32),
        "opacities": np.clip(arrays["opacities"], 0.0, 1.0).astype(np.float32),
    }


def preset_camera(yaw_deg: float) -> dict[str, Any]:
    """A camera on our orbit ``yaw_deg`` from the front, for viser: position, look_at, up_direction, fov (rad).

    Radius 2.7, pitch frontal, looking at the origin, y up, and the vertical
    field of view of the dataset's camera (2 atan(1 / (2 * 4.2647)), 13.4 deg).
    """
    label = look_at(FRONTAL_YAW + math.radians(yaw_deg), FRONTAL_PITCH, DEFAULT_RADIUS, dtype=torch.float64)
    return {
        "position": camera_positions(label)[0].numpy(),
        "look_at": np.zeros(3),
        "up_direction": np.array([0.0, 1.0, 0.0]),
        "fov": float(fov_from_focal(DEFAULT_FOCAL)),
    }


def _preset_label(yaw_deg: float) -> str:
    return "front" if yaw_deg == 0 else f"{yaw_deg:+g}°"


# ------------------------------------------------------------------ networking
def _import_viser() -> Any:
    try:
        import viser
    except ImportError as exc:
        raise ImportError(f"{VIEWER_INSTALL_HINT} ({exc})") from exc
    return viser


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: resolve it
        try:
            infos = socket.getaddrinfo(host, None)
        except socket.gaierror:
            return False
        return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _check_port(host: str, port: int) -> None:
    """PortInUseError if ``port`` on ``host`` cannot be bound the way the server will bind it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"viewer host {host!r} is not an address or a known host name ({exc})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise _port_in_use(host, port) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ValueError(f"viewer host {host!r} is not an address of this machine") from None
                raise


def _port_in_use(host: str, port: int) -> PortInUseError:
    error = PortInUseError(
        f"port {port} on {host} is already in use (another viewer?): "
        "choose another with --port, or --port 0 for a free one"
    )
    error.errno = errno.EADDRINUSE
    return error


def _check_port_number(port: int | None) -> int:
    if port is None:
        return 0
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535 (0 = any free port), got {port!r}")
    return port


def _precheck(kwargs: dict[str, Any]) -> None:
    """The cheap failures (no viser, a bad or busy port) before a network or a file is loaded."""
    _import_viser()
    port = _check_port_number(kwargs.get("port", DEFAULT_PORT))
    host = kwargs.get("host", DEFAULT_HOST)
    if port and isinstance(host, str) and host:
        _check_port(host, port)


def _url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"  # every interface: this machine reaches it as localhost
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# ------------------------------------------------------------------ viewer
class Viewer:
    """A running viser server showing one head; see the module docstring.

    Give either ``generator`` (a CGSGenerator: seed / truncation / level
    controls) or ``scene`` (a fixed scene, sample 0 shown; no generator
    controls). The server starts in the constructor and runs on background
    threads until :meth:`stop` (or the end of a ``with`` block).
    """

    def __init__(
        self,
        generator: torch.nn.Module | None = None,
        scene: GaussianScene | None = None,
        *,
        name: str | None = None,
        seed: int = 0,
        truncation: float = 0.8,
        host: str = DEFAULT_HOST,
        port: int | None = DEFAULT_PORT,
        outdir: str | os.PathLike = DEFAULT_OUTDIR,
        verbose: bool = True,
        precision: str = "float32",
        compile: bool = False,
    ) -> None:
        if (generator is None) == (scene is None):
            raise ValueError("give either a generator or a scene")
        self._G = generator
        # One head at a time: a compiled synthesizer compiles once, for batch 1.
        self._synthesize = Synthesizer(generator, precision, compile, batch=1) if generator is not None else None
        self._levels = level_ranges(generator.cfg) if generator is not None else None
        self._name = name or "scene"
        self._seed = parse_seeds(seed)[0] if generator is not None else None
        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not 0 <= truncation < math.inf:
            raise ValueError(f"truncation must be a number >= 0 (1 = none, 0 = the average head), got {truncation!r}")
        self._truncation = float(truncation)
        self._outdir = Path(outdir)
        self._verbose = verbose
        self._lock = threading.RLock()
        self._server = None
        self._stopped = False
        self._last_export: Path | None = None
        self._gen_seconds: float | None = None
        self._error: str | None = None
        self._source: Path | None = None  # the file shown, never overwritten by an export

        requested = _check_port_number(port)
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        viser = _import_viser()

        if generator is not None:
            self._scene = self._generate(self._seed, self._truncation)  # fails before the server starts
        else:
            if scene.num_gaussians == 0:
                raise ValueError("the scene has no Gaussians")
            self._scene = scene[0].detach().to("cpu")
        self._shown_levels = len(self._levels) if self._levels else 1
        self._formats = {label: s for label, s in EXPORT_FORMATS.items() if s in files.SCENE_SUFFIXES}

        if not _is_loopback(host):
            warnings.warn(
                f"the viewer listens on {host}, so it is reachable from the network: anyone who can connect "
                f"can see the head and make it write files to {self._outdir}",
                UserWarning,
                stacklevel=2,
            )
        if requested:
            _check_port(host, requested)
        with contextlib.redirect_stdout(io.StringIO()):  # viser's banner: we print our own line below
            self._server = viser.ViserServer(host=host, port=requested, label="cgsgan", verbose=False)
        self._host = host
        self._port = self._server.get_port()
        if requested and self._port != requested:  # taken between the check and the bind: viser moved on
            self.stop()
            raise _port_in_use(host, requested)
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        if verbose:
            print(f"cgsgan viewer: {self.url}  (Ctrl+C to stop)", flush=True)

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_network(
        cls, network: str | os.PathLike | None = None, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Viewer:
        """A viewer of a network (None = the built-in one) on ``device``; kwargs as for :class:`Viewer`."""
        _precheck(kwargs)  # fail before loading a large network
        return cls(generator=open_network(network, files.resolve_device(device)), **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> Viewer:
        """A viewer of a 3DGS file that :func:`cgsgan.apps.files.read_scene` reads; kwargs as for :class:`Viewer`."""
        _precheck(kwargs)
        viewer = cls(scene=files.read_scene(path), name=files.scene_stem(path), **kwargs)
        viewer._source = Path(path)
        return viewer

    # ---------------------------------------------------------------- state
    @property
    def url(self) -> str:
        return _url(self._host, self._port)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port actually bound (the one asked for, or the free one picked for port 0)."""
        return self._port

    @property
    def server(self) -> Any:
        """The underlying ``viser.ViserServer``."""
        return self._server

    @property
    def scene(self) -> GaussianScene:
        """The current head, every level (B = 1, CPU)."""
        return self._scene

    @property
    def shown_scene(self) -> GaussianScene:
        """What the page shows and export writes: the selected levels of :attr:`scene`."""
        if not self._levels:
            return self._scene
        return self._scene.subset(slice(0, self._levels[self._shown_levels - 1][1]))

    @property
    def num_splats(self) -> int:
        """Splats sent to the browser (the size of the splat node's buffer)."""
        return int(self._splats.buffer.shape[0])

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def truncation(self) -> float:
        return self._truncation

    @property
    def levels(self) -> int:
        """Hierarchy levels shown (1 = level 0 only); 1 for a file."""
        return self._shown_levels

    @property
    def status(self) -> str:
        """The status line of the panel (markdown)."""
        return self._status.content

    @property
    def gui(self) -> dict[str, Any]:
        """The viser GUI handles by role (seed, truncation, levels, cameras, format, export, status)."""
        return dict(self._handles)

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopped

    # ---------------------------------------------------------------- panel
    def _build(self) -> None:
        server = self._server
        server.scene.set_up_direction("+y")
        front = preset_camera(0)
        server.initial_camera.position = tuple(front["position"])
        server.initial_camera.look_at = tuple(front["look_at"])
        server.initial_camera.up = tuple(front["up_direction"])
        server.initial_camera.fov = front["fov"]
        handles: dict[str, Any] = {}
        gui = server.gui

        if self._G is not None:
            with gui.add_folder("Head"):
                handles["seed"] = gui.add_number("Seed", int(self._seed), min=0, max=2**32 - 1, step=1)
                handles["truncation"] = gui.add_slider(
                    "Truncation",
                    min=0.0,
                    max=max(1.0, self._truncation),
                    step=_TRUNCATION_STEP,
                    initial_value=self._truncation,
                    hint="1 = no truncation, 0 = the average head",
                )
                options = self._level_options()
                handles["levels"] = gui.add_dropdown(
                    "Levels", options, initial_value=options[-1], visible=len(options) > 1
                )
            handles["seed"].on_update(self._guarded(lambda _: self._regenerate()))
            handles["truncation"].on_update(self._guarded(lambda _: self._regenerate()))
            handles["levels"].on_update(self._guarded(lambda _: self._select_levels()))

        with gui.add_folder("Camera"):
            handles["cameras"] = gui.add_button_group("View", [_preset_label(yaw) for yaw in PRESET_YAWS_DEG])
        labels = {_preset_label(yaw): yaw for yaw in PRESET_YAWS_DEG}
        handles["cameras"].on_click(self._guarded(lambda event: self.set_camera(labels[event.target.value])))

        with gui.add_folder("Export"):
            names = list(self._formats) or ["PLY"]
            handles["format"] = gui.add_dropdown("Format", names, initial_value=names[0])
            handles["export"] = gui.add_button("Export", hint=f"writes the head as shown to {self._outdir}")
        handles["export"].on_click(
            self._guarded(lambda event: self.export(self._formats.get(handles["format"].value, ".ply"), event.client))
        )
        handles["status"] = gui.add_markdown("")
        self._status = handles["status"]
        self._handles = handles
        self._splats = None
        self._show()

    def _level_options(self) -> list[str]:
        options = []
        for k, (_, stop) in enumerate(self._levels):
            what = "level 0" if k == 0 else f"levels 0-{k}"
            if k == len(self._levels) - 1 and k > 0:
                what = "all levels"
            options.append(f"{what} ({stop:,})")
        return options

    def _guarded(self, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        """A GUI callback that reports a failure in the status line instead of a thread's traceback."""

        def callback(event: Any) -> None:
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self._error = f"{type(exc).__name__}: {exc}"
                self._update_status()

        return callback

    def _update_status(self) -> None:
        parts = [f"**{self.shown_scene.num_gaussians:,}** of {self._scene.num_gaussians:,} Gaussians"]
        if self._gen_seconds is not None:
            parts.append(f"generated in {self._gen_seconds:.2f} s")
        if self._last_export is not None:
            parts.append(f"exported `{self._last_export.name}`")
        text = " · ".join(parts)
        if self._error:
            text += f"  \n**Error:** {self._error}"
        self._status.content = text

    # ---------------------------------------------------------------- actions
    def _generate(self, seed: int, truncation: float) -> GaussianScene:
        start = time.perf_counter()
        heads = generate(self._G, [seed], truncation=truncation, synthesizer=self._synthesize)
        scene = heads.scene.detach().to("cpu")
        self._gen_seconds = time.perf_counter() - start
        return scene

    def _regenerate(self) -> None:
        with self._lock:
            seed = parse_seeds(int(self._handles["seed"].value))[0]
            truncation = float(self._handles["truncation"].value)
            self._scene = self._generate(seed, truncation)
            self._seed, self._truncation, self._error = seed, truncation, None
            self._show()

    def _select_levels(self) -> None:
        with self._lock:
            self._shown_levels = self._level_options().index(self._handles["levels"].value) + 1
            self._error = None
            self._show()

    def _show(self) -> None:
        """Send the shown selection to every browser (one atomic buffer update)."""
        with self._lock:
            splats = scene_to_splats(self.shown_scene)
            if self._splats is None:
                self._splats = self._server.scene.add_gaussian_splats(SPLATS_NODE, **splats)
            else:
                self._splats.set_gaussians(**splats)
            self._update_status()

    def set_seed(self, seed: int) -> None:
        """Show the head of ``seed`` (as typing it in the page does); generator viewers only."""
        self._require_generator()
        seed = parse_seeds(seed)[0]
        if seed == self._handles["seed"].value:
            self._regenerate()
        else:
            self._handles["seed"].value = seed  # runs the update callback, which regenerates

    def set_truncation(self, truncation: float) -> None:
        """Regenerate with ``truncation`` in the slider's range (0..1, or up to the starting value)."""
        self._require_generator()
        slider = self._handles["truncation"]
        if not isinstance(truncation, (int, float)) or not slider.min <= truncation <= slider.max:
            raise ValueError(f"truncation must be in {slider.min:g}..{slider.max:g}, got {truncation!r}")
        slider.value = float(truncation)

    def set_levels(self, levels: int) -> None:
        """Show hierarchy levels 0 .. ``levels`` - 1 (1 = level 0 only); generator viewers only."""
        self._require_generator()
        options = self._level_options()
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= len(options):
            raise ValueError(f"levels must be 1..{len(options)}, got {levels!r}")
        self._handles["levels"].value = options[levels - 1]

    def set_camera(self, yaw_deg: float = 0.0) -> int:
        """Move every connected browser's camera to the orbit preset ``yaw_deg``; returns how many moved.

        Also makes it the camera that new browsers (and "reset view") start from.
        """
        preset = preset_camera(yaw_deg)
        self._server.initial_camera.position = tuple(preset["position"])
        clients = list(self._server.get_clients().values())
        for client in clients:
            with client.atomic():
                camera = client.camera
                camera.up_direction = preset["up_direction"]
                camera.fov = preset["fov"]
                camera.position = preset["position"]
                camera.look_at = preset["look_at"]  # after position: moving the position shifts look_at
        return len(clients)

    def export_name(self, suffix: str = ".ply") -> str:
        """The file name :meth:`export` writes: seed0042[_levels0-k].ply, or <stem>.ply for a file."""
        if self._G is None:
            name = f"{self._name}{suffix}"
            if self._source is not None and (self._outdir / name).resolve() == self._source.resolve():
                name = f"{self._name}_view{suffix}"
            return name
        name = f"seed{self._seed:04d}"
        if self._shown_levels < len(self._levels):
            name += f"_levels0-{self._shown_levels - 1}"
        return name + suffix

    def export(self, suffix: str = ".ply", client: Any = None) -> Path:
        """Write the head as shown to the output folder as ``suffix`` (.ply / .spz / .splat); returns the path.

        The file is also sent as a download to ``client`` (a viser ClientHandle:
        the browser whose button was clicked), or to every connected browser
        when ``client`` is None.
        """
        suffix = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
        if suffix not in files.SCENE_SUFFIXES:
            raise ValueError(f"cannot export {suffix}: the installed writers know {', '.join(files.SCENE_SUFFIXES)}")
        with self._lock:
            scene = self.shown_scene
            path = self._outdir / self.export_name(suffix)
            self._outdir.mkdir(parents=True, exist_ok=True)
            files.write_scene(path, scene)
            self._last_export, self._error = path, None
            self._update_status()
        content = path.read_bytes()
        targets = [client] if client is not None else list(self._server.get_clients().values())
        for target in targets:
            target.send_file_download(path.name, content, save_immediately=True)
        return path

    def _require_generator(self) -> None:
        if self._G is None:
            raise ValueError("this viewer shows a file: it has no generator controls")

    # ---------------------------------------------------------------- lifetime
    def run_until_interrupted(self) -> None:
        """Serve until Ctrl+C (or :meth:`stop` from another thread), then stop cleanly."""
        try:
            self.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def wait(self) -> None:
        """Block until :meth:`stop` is called from another thread (or Ctrl+C, which propagates)."""
        while self.running:
            time.sleep(0.2)

    def stop(self) -> None:
        """Shut the server down: connections closed, its threads ended, the port free. Idempotent."""
        if self._server is None or self._stopped:
            return
        self._stopped = True
        with contextlib.redirect_stdout(io.StringIO()):  # viser's "Server stopped", printed by its thread
            self._server.stop()
            # viser 1.1 joins its event-loop thread for 1 s only and leaves its callback pool's
            # threads to finish on their own: wait for both (private names, hence the getattr)
            thread = getattr(getattr(self._server, "_websock_server", None), "_server_thread", None)
            if thread is not None:
                thread.join(timeout=5.0)
        pool = getattr(self._server, "_thread_executor", None)
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ------------------------------------------------------------------ blocking entry points
def _run(viewer: Viewer, block: bool) -> Viewer:
    if block:
        viewer.run_until_interrupted()
    return viewer


def serve(
    network: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    truncation: float = 0.8,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    device: str | torch.device = "cpu",
    outdir: str | os.PathLike = DEFAULT_OUTDIR,
    block: bool = True,
    verbose: bool = True,
    precision: str = "float32",
    compile: bool = False,
) -> Viewer:
    """View heads of ``network`` (None = the built-in one); blocks until Ctrl+C unless ``block`` is False.

    ``precision`` and ``compile`` choose the network's path (:class:`cgsgan.apps.heads.Synthesizer`)."""
    viewer = Viewer.from_network(network, device, seed=seed, truncation=truncation, host=host, port=port,
                                 outdir=outdir, verbose=verbose, precision=precision, compile=compile)  # fmt: skip
    return _run(viewer, block)


def view(
    path: str | os.PathLike,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    outdir: str | os.PathLike = DEFAULT_OUTDIR,
    block: bool = True,
    verbose: bool = True,
) -> Viewer:
    """View a 3DGS file (.ply, .splat, ...); blocks until Ctrl+C unless ``block`` is False."""
    return _run(Viewer.from_file(path, host=host, port=port, outdir=outdir, verbose=verbose), block)
