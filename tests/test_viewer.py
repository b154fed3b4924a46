"""The web viewer: splat conversion (always) and a live viser server on a free loopback port (needs viser)."""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
import urllib.request
import warnings

import numpy as np
import pytest
import torch

from cgsgan.apps.files import read_scene, write_scene
from cgsgan.apps.heads import generate, level_ranges, open_network
from cgsgan.apps.viewer import (
    EXPORT_FORMATS,
    PortInUseError,
    Viewer,
    _import_viser,
    preset_camera,
    scene_to_splats,
    serve,
    view,
)
from cgsgan.camera import DEFAULT_RADIUS
from cgsgan.gaussians import GaussianScene, sh_to_rgb


def scene_of(n: int = 50, batch: int = 1, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        xyz=torch.randn(batch, n, 3, generator=g) * 0.3,
        scale=torch.rand(batch, n, 3, generator=g) * 2 - 5,
        rotation=torch.randn(batch, n, 4, generator=g),
        opacity=torch.randn(batch, n, 1, generator=g) * 2,
        color=torch.randn(batch, n, 3, generator=g) * 3,
    )


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate v by the unit quaternion q (w, x, y, z) as q v q*, with Hamilton products written out."""

    def mul(a, b):
        aw, ax, ay, az = a
        bw, bx, by, bz = b
        return np.array(
            [
                aw * bw - ax * bx - ay * by - az * bz,
                aw * bx + ax * bw + ay * bz - az * by,
                aw * by - ax * bz + ay * bw + az * bx,
                aw * bz + ax * by - ay * bx + az * bw,
            ]
        )

    conj = q * np.array([1, -1, -1, -1])
    return mul(mul(q, np.concatenate([[0.0], v])), conj)[1:]


# ------------------------------------------------------------------ conversion
def test_axis_aligned_covariance_is_diag_exp_2_log_scale():
    scene = scene_of(20)
    scene.rotation = torch.tensor([2.0, 0.0, 0.0, 0.0]).expand(1, 20, 4).clone()  # identity, unnormalised
    splats = scene_to_splats(scene)
    expected = np.stack([np.diag(np.exp(2 * s)) for s in scene.scale[0].double().numpy()])
    np.testing.assert_allclose(splats["covariances"], expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(splats["centers"], scene.xyz[0].numpy())


def test_rotated_covariance_matches_a_direct_computation():
    scene = scene_of(64, batch=2, seed=3)
    splats = scene_to_splats(scene, index=1)
    q = scene.rotation[1].double().numpy()
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s = np.exp(scene.scale[1].double().numpy())
    for i in range(64):
        axes = [quat_rotate(q[i], e) for e in np.eye(3)]  # the Gaussian's local axes in the world
        direct = sum(s[i, k] ** 2 * np.outer(axes[k], axes[k]) for k in range(3))
        # float32 activations: errors relative to the largest entry
        np.testing.assert_allclose(splats["covariances"][i], direct, rtol=0, atol=1e-5 * np.abs(direct).max())
    eig = np.linalg.eigvalsh(splats["covariances"].astype(np.float64))
    np.testing.assert_allclose(eig, np.sort(s**2, axis=1), rtol=1e-4)
    # 90 degrees about z swaps the x and y extents
    turn = GaussianScene(
        xyz=torch.zeros(1, 1, 3),
        scale=torch.log(torch.tensor([[[0.1, 0.2, 0.3]]])),
        rotation=torch.tensor([[[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]]]),
        opacity=torch.zeros(1, 1, 1),
        color=torch.zeros(1, 1, 3),
    )
    np.testing.assert_allclose(scene_to_splats(turn)["covariances"][0], np.diag([0.04, 0.01, 0.09]), atol=1e-7)


def test_colours_and_opacities():
    scene = scene_of(200)
    splats = scene_to_splats(scene)
    assert {k: v.shape for k, v in splats.items()} == {
        "centers": (200, 3),
        "covariances": (200, 3, 3),
        "rgbs": (200, 3),
        "opacities": (200, 1),
    }
    assert all(v.dtype == np.float32 for v in splats.values())
    rgb = sh_to_rgb(scene.color[0]).numpy()
    assert (rgb > 1).any() and (rgb <= 0).any()  # the clipping is exercised
    np.testing.assert_allclose(splats["rgbs"], np.clip(rgb, 0, 1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(splats["opacities"], torch.sigmoid(scene.opacity[0]).numpy(), rtol=1e-6)


def test_preset_cameras_sit_on_the_orbit():
    front = preset_camera(0)
    np.testing.assert_allclose(front["position"], [0, 0, DEFAULT_RADIUS], atol=1e-9)
    np.testing.assert_allclose(front["up_direction"], [0, 1, 0])
    assert front["fov"] == pytest.approx(2 * math.atan(1 / (2 * 4.2647)))
    right = preset_camera(30)["position"]
    assert np.linalg.norm(right) == pytest.approx(DEFAULT_RADIUS)
    assert math.degrees(math.atan2(right[0], right[2])) == pytest.approx(30)


def test_missing_viser_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "viser", None)
    with pytest.raises(ImportError, match=r'pip install "cgsgan\[viewer\]"'):
        _import_viser()


# ------------------------------------------------------------------ live server
@pytest.fixture(scope="module")
def G():
    pytest.importorskip("viser")
    return open_network(None)


@pytest.fixture
def viewer(G, tmp_path):
    with Viewer(G, port=0, outdir=tmp_path / "view", verbose=False) as v:
        yield v


def get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    with opener.open(url, timeout=10) as response:
        return response.read()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def connect_client(viewer: Viewer):
    """A websocket client speaking viser's protocol, announced the way a browser is (its first camera message)."""
    import msgspec
    import viser
    from viser import _messages
    from websockets.sync.client import connect

    ws = connect(
        f"ws://127.0.0.1:{viewer.port}",
        subprotocols=[f"viser-v{viser.__version__}"],
        proxy=None,
        max_size=None,
    )
    camera = _messages.ViewerCameraMessage(
        wxyz=(1.0, 0.0, 0.0, 0.0),
        position=(0.0, 0.0, 5.0),
        fov=1.0,
        near=0.01,
        far=100.0,
        image_height=480,
        image_width=640,
        look_at=(0.0, 0.0, 0.0),
        up_direction=(0.0, 1.0, 0.0),
    )
    ws.send(msgspec.msgpack.encode(camera.as_serializable_dict()))
    return ws


def test_serves_the_page_and_a_client(viewer):
    assert viewer.url == f"http://127.0.0.1:{viewer.port}" and viewer.port > 0
    page = get(viewer.url + "/")
    assert page.lstrip().lower().startswith(b"<!doctype html")
    ws = connect_client(viewer)
    try:
        assert isinstance(ws.recv(timeout=10), bytes)  # the scene and the panel arrive
        assert wait_for(lambda: len(viewer.server.get_clients()) == 1)
        # a camera preset moves the connected browser onto our orbit
        assert viewer.set_camera(-60) == 1
        client = next(iter(viewer.server.get_clients().values()))
        preset = preset_camera(-60)
        np.testing.assert_allclose(client.camera.position, preset["position"], atol=1e-9)
        np.testing.assert_allclose(client.camera.look_at, [0, 0, 0], atol=1e-9)
        assert client.camera.fov == pytest.approx(preset["fov"])
        viewer.gui["cameras"].value = "+30°"  # the button row's handler does the same
        np.testing.assert_allclose(client.camera.position, preset_camera(30)["position"], atol=1e-9)
        # export sends the file to the browser too
        path = viewer.export(".splat")
        assert path.is_file()
    finally:
        ws.close()
    assert wait_for(lambda: not viewer.server.get_clients())


def test_seed_and_truncation_controls_regenerate(viewer, G):
    first = viewer.scene
    assert viewer.seed == 0 and viewer.truncation == pytest.approx(0.8)
    viewer.gui["seed"].value = 7  # as the page's number input does
    assert viewer.seed == 7
    assert not torch.equal(viewer.scene.xyz, first.xyz)
    torch.testing.assert_close(viewer.scene.xyz, generate(G, [7], 0.8).scene.xyz)
    viewer.set_truncation(0.0)
    torch.testing.assert_close(viewer.scene.xyz, generate(G, [7], 0.0).scene.xyz)
    assert "Gaussians" in viewer.status and "generated in" in viewer.status


def test_a_compiled_viewer_shows_the_same_heads(G, tmp_path):
    with Viewer(generator=G, seed=3, port=0, outdir=tmp_path, verbose=False, compile=True) as compiled:
        torch.testing.assert_close(compiled.scene.xyz, generate(G, [3], 0.8).scene.xyz, atol=1e-5, rtol=0)
        compiled.set_seed(4)
        torch.testing.assert_close(compiled.scene.xyz, generate(G, [4], 0.8).scene.xyz, atol=1e-5, rtol=0)


def test_level_control_changes_the_splats_sent(viewer, G):
    ranges = level_ranges(G.cfg)
    assert viewer.num_splats == ranges[-1][1] == viewer.scene.num_gaussians
    options = viewer.gui["levels"].options
    assert len(options) == len(ranges)
    viewer.gui["levels"].value = options[0]
    assert viewer.levels == 1 and viewer.num_splats == ranges[0][1]
    viewer.set_levels(2)
    assert viewer.num_splats == ranges[1][1]
    viewer.set_seed(3)  # a new head keeps the level choice
    assert viewer.num_splats == ranges[1][1]
    with pytest.raises(ValueError, match="levels"):
        viewer.set_levels(len(ranges) + 1)


def test_export_writes_the_head_as_shown(viewer, tmp_path):
    viewer.set_seed(42)
    path = viewer.export(".ply")
    assert path == tmp_path / "view" / "seed0042.ply"
    back = read_scene(path)
    for name, value in viewer.scene.tensors().items():
        torch.testing.assert_close(getattr(back, name), value, rtol=0, atol=0)
    viewer.set_levels(1)
    viewer.gui["export"].value = True  # the Export button: the format dropdown says PLY
    path = tmp_path / "view" / "seed0042_levels0-0.ply"
    torch.testing.assert_close(read_scene(path).xyz, viewer.shown_scene.xyz, rtol=0, atol=0)
    assert read_scene(path).num_gaussians == viewer.num_splats
    assert "seed0042_levels0-0.ply" in viewer.status
    with pytest.raises(ValueError, match="cannot export"):
        viewer.export(".obj")


def test_every_offered_format_exports(viewer, tmp_path):
    options = viewer.gui["format"].options
    assert options[0] == "PLY" and ".splat" in options
    for label in options:
        viewer.gui["format"].value = label
        viewer.gui["export"].value = True
        suffix = EXPORT_FORMATS[label]
        back = read_scene(tmp_path / "view" / f"seed0000{suffix}")
        assert back.num_gaussians == viewer.num_splats
        # some formats reorder and quantise: compare each axis's sorted values
        torch.testing.assert_close(back.xyz[0].sort(0).values, viewer.scene.xyz[0].sort(0).values, rtol=0, atol=0.01)


def test_file_viewer(tmp_path):
    pytest.importorskip("viser")
    source = write_scene(tmp_path / "head.ply", scene_of(300))
    with view(source, port=0, outdir=tmp_path, block=False, verbose=False) as viewer:
        assert viewer.num_splats == 300 and "levels" not in viewer.gui and "seed" not in viewer.gui
        path = viewer.export(".ply")
        assert path == tmp_path / "head_view.ply"  # never over the file shown
        torch.testing.assert_close(read_scene(path).xyz, read_scene(source).xyz)
        with pytest.raises(ValueError, match="file"):
            viewer.set_seed(1)


def test_port_in_use_is_one_clear_error(G, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"port {port} .*--port") as info:
            Viewer(G, port=port, outdir=tmp_path, verbose=False)
        with pytest.raises(PortInUseError, match=rf"port {port} "):
            serve(None, port=port, outdir=tmp_path, verbose=False)  # before loading the network
    assert isinstance(info.value, OSError)
    with pytest.raises(ValueError, match="port"):
        Viewer(G, port=70000, verbose=False)
    with pytest.raises(ValueError, match="truncation"):
        Viewer(G, truncation=-0.5, port=0, verbose=False)


def test_non_loopback_host_warns(G, tmp_path):
    with pytest.warns(UserWarning, match="reachable from the network"):
        viewer = Viewer(G, host="0.0.0.0", port=0, outdir=tmp_path, verbose=False)
    viewer.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Viewer(G, host="localhost", port=0, outdir=tmp_path, verbose=False).stop()


def test_stop_ends_threads_and_frees_the_port(G, tmp_path, capsys):
    before = set(threading.enumerate())
    viewer = Viewer(G, port=0, outdir=tmp_path)
    assert viewer.url in capsys.readouterr().out
    port = viewer.port
    viewer.set_seed(1)
    viewer.stop()
    viewer.stop()  # idempotent
    assert not viewer.running
    assert wait_for(lambda: set(threading.enumerate()) <= before), set(threading.enumerate()) - before
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/")
