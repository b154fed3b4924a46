import dataclasses
import io
import json
import pickle

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from test_official import EasyDict, _install_fake_packages, _reconstruct_persistent_obj

from cgsgan.cli import main
from cgsgan.config import GeneratorConfig, generator_config
from cgsgan.io import checkpoint
from cgsgan.io.checkpoint import (
    convert_official,
    infer_generator_config,
    load_discriminator,
    load_network,
    read_state_dicts,
    save_networks,
)
from cgsgan.models import build_generator
from cgsgan.models.discriminator import Discriminator, DiscriminatorConfig


def tiny(revision="v2", seed=0):
    G = build_generator(generator_config("tiny64", revision=revision), seed=seed)
    with torch.no_grad():  # non-zero layer scales, so outputs depend on every weight
        for name, p in G.named_parameters():
            if ".ls_" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return G.eval()


def same_outputs(a, b):
    z = torch.randn(2, a.cfg.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        sa, sb = a(z)[0], b(z)[0]
    return all(torch.equal(getattr(sa, f), getattr(sb, f)) for f in ("xyz", "scale", "rotation", "opacity", "color"))


# ------------------------------------------------------------ our format
def test_round_trip_restores_config_weights_and_outputs(tmp_path):
    G, G_ema = tiny(seed=0), tiny(seed=1)
    path = save_networks(tmp_path / "net.safetensors", {"G": G, "G_ema": G_ema}, G.cfg, source="test")
    loaded = load_network(path)  # G_ema by default
    assert loaded.cfg == G.cfg
    assert same_outputs(loaded, G_ema) and not same_outputs(loaded, G)
    assert same_outputs(load_network(path, "G"), G)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temp files left


def test_raw_state_dicts_are_kept_by_name(tmp_path):
    G = tiny()
    d_state = {"b4.fc.weight": torch.randn(3, 2), "b4.fc.bias": torch.zeros(3)}
    path = save_networks(tmp_path / "net.safetensors", {"G": G, "D": d_state}, G.cfg)
    states = read_state_dicts(path)
    assert set(states) == {"G", "D"}
    assert torch.equal(states["D"]["b4.fc.weight"], d_state["b4.fc.weight"])
    with pytest.raises(ValueError, match="'D' in .* is not a generator"):
        load_network(path, "D")
    with pytest.raises(ValueError, match="no network 'G_ema'; it has G, D"):
        load_network(path, "G_ema")


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    G = tiny()
    path = save_networks(tmp_path / "net.safetensors", {"G": G}, G.cfg)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_networks(path, {"G": tiny(seed=3)}, G.cfg)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_bad_files_are_named(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.safetensors is not a readable safetensors checkpoint"):
        load_network(junk)
    pkl = tmp_path / "snapshot.pkl"
    pkl.write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="snapshot.pkl: not a readable pickle snapshot"):
        load_network(pkl)  # official snapshots load directly; a broken one is named
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a cgsgan checkpoint"):
        load_network(foreign)
    with pytest.raises(FileNotFoundError):
        load_network(tmp_path / "missing.safetensors")


def test_mismatched_weights_are_listed(tmp_path):
    G = tiny()
    state = G.state_dict()
    del state["_xyz"]
    state["point_gen.extra"] = torch.zeros(1)
    state["mapping_network.w_avg"] = torch.zeros(5)
    path = save_networks(tmp_path / "net.safetensors", {"G": state}, G.cfg)
    with pytest.raises(ValueError, match=r"missing \(1\): _xyz; unexpected \(1\): point_gen.extra; wrong shape") as e:
        load_network(path)
    assert "mapping_network.w_avg [5] vs [128]" in str(e.value)


# ------------------------------------------------------------ official snapshots
class OfficialPickler(pickle.Pickler):
    """Pickles our modules the way torch_utils.persistence pickles the official ones (meta + __dict__)."""

    def reducer_override(self, obj):
        if isinstance(obj, GeneratorConfig | DiscriminatorConfig):  # configs: plain dicts, as official kwargs are
            return (EasyDict, (dataclasses.asdict(obj),))
        if isinstance(obj, torch.nn.Module) and type(obj).__module__.startswith("cgsgan"):
            meta = dict(type="class", version=6, module_src="raise SystemExit", class_name=type(obj).__name__)
            hooks = {k: type(v)() for k, v in obj.__dict__.items() if k.endswith("_hooks")}  # ours, not official
            meta["state"] = {**obj.__dict__, **hooks}
            return (_reconstruct_persistent_obj, (meta,))
        return NotImplemented


def official_pickle(path, networks, extra=None):
    buffer = io.BytesIO()
    OfficialPickler(buffer, protocol=4).dump({**networks, "augment_pipe": None, **(extra or {})})
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("revision", ["v1", "v2"])
def test_convert_official_snapshot(tmp_path, monkeypatch, revision):
    _install_fake_packages(monkeypatch)
    G, G_ema = tiny(revision, seed=0), tiny(revision, seed=1)
    D = Discriminator(DiscriminatorConfig(resolution=64))
    opt = torch.optim.Adam(G.parameters(), lr=1e-3)
    sum(p.sum() for p in G.parameters()).backward()
    opt.step()
    src = official_pickle(
        tmp_path / "network-snapshot-000100.pkl",
        {"G": G, "G_ema": G_ema},
        {"D_opt": opt.state_dict(), "D": D},
    )
    dst = convert_official(src, tmp_path / "out" / "tiny.safetensors")
    assert infer_generator_config(G.state_dict()) == G.cfg
    loaded = load_network(dst)
    assert loaded.cfg == G.cfg
    assert same_outputs(loaded, G_ema)
    assert same_outputs(load_network(dst, "G"), G)
    loaded_d = load_discriminator(dst)
    images, labels = torch.randn(4, 3, 64, 64), torch.randn(4, 25)
    with torch.no_grad():
        assert torch.equal(loaded_d(images, labels), D(images, labels))
    optim = torch.load(dst.with_name(dst.name + ".optim.pt"), weights_only=True)
    assert set(optim) == {"D_opt"} and len(optim["D_opt"]["state"]) == len(list(G.parameters()))
    metadata = checkpoint.read_metadata(dst)
    assert json.loads(metadata["generator"])["revision"] == revision
    assert "network-snapshot-000100.pkl" in metadata["source"]


def test_load_network_reads_an_official_pickle_directly(tmp_path, monkeypatch):
    _install_fake_packages(monkeypatch)
    G, G_ema = tiny("v2", seed=0), tiny("v2", seed=1)
    src = official_pickle(tmp_path / "network-snapshot-000100.pkl", {"G": G, "G_ema": G_ema})
    assert same_outputs(load_network(src), G_ema)
    assert same_outputs(load_network(src, "G"), G)
    assert not load_network(src).training and list(tmp_path.iterdir()) == [src]  # nothing written beside it
    with pytest.raises(ValueError, match="no generator D"):
        load_network(src, "D")


def test_convert_refuses_a_pickle_with_foreign_globals_and_writes_nothing(tmp_path, monkeypatch):
    import os

    _install_fake_packages(monkeypatch)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    src = official_pickle(tmp_path / "evil.pkl", {"G_ema": tiny(), "x": Evil()})
    with pytest.raises(ValueError, match="system"):
        convert_official(src, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_command(tmp_path, monkeypatch):
    _install_fake_packages(monkeypatch)
    src = official_pickle(tmp_path / "snap.pkl", {"G_ema": tiny()})
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(src), str(tmp_path / "g.safetensors")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "g.safetensors").is_file()
    result = runner.invoke(main, ["convert", str(src), str(tmp_path / "g.ply")])
    assert result.exit_code != 0 and "must end in .safetensors" in result.output
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"\x80\x04\x95")
    result = runner.invoke(main, ["convert", str(bad), str(tmp_path / "b.safetensors")])
    assert result.exit_code == 1 and "broken.pkl" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ the built-in network
def test_the_built_in_network_renders_distinct_heads():
    import math

    from cgsgan.camera import look_at
    from cgsgan.render import render

    G = load_network()  # no path: the packaged tiny64 network
    assert (G.cfg.resolution, G.cfg.num_points, G.cfg.width) == (64, 256, 128)
    assert all(p.dtype == torch.float32 for p in G.parameters())  # stored in float16, loaded as float32
    z = torch.randn(4, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = render(G(z)[0], look_at(math.pi / 2, math.pi / 2), 64, background=1.0)
    centre, corners = out.alpha[..., 24:40, 24:40].mean(), out.alpha[..., :8, :8].mean()
    assert centre > 0.9 and corners < 0.05  # an opaque head in the middle, background at the corners
    assert (out.image[0] - out.image[1]).abs().mean() > 0.02  # different latents, different heads


def test_a_missing_built_in_network_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("cgsgan.assets.DEFAULT_NETWORK", "nothing-here.safetensors")
    with pytest.raises(FileNotFoundError, match="built-in network nothing-here.safetensors is missing"):
        load_network()
