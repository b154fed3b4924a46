"""The maintenance scripts in tools/: training figures from a run folder, shipping a network, side views."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    ticks = [{"tick": i, "kimg": 0.256 * i, "G_loss": 1.0 + 0.1 * i, "D_loss": 1.2, "D_real": 0.4, "D_fake": -0.5,
              "R1": 0.05, "knn": 0.003, "blur_sigma": max(0.0, 2 - i)} for i in range(1, 6)]  # fmt: skip
    ticks[3]["fid1k"] = 300.0  # measured during training, at 1.024 kimg
    (run / "stats.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks) + '{"tick": 6, "kim')
    manifest = {"version": 1, "snapshots": [
        {"network": "network-snapshot-000000.safetensors", "state": None, "step": 64, "images": 512},
        {"network": "network-snapshot-000001.safetensors", "state": None, "step": 160, "images": 1280},
    ]}  # fmt: skip
    (run / "snapshots.json").write_text(json.dumps(manifest))
    results = [  # measured afterwards with cgsgan metrics: kimg from the manifest; the second result of a snapshot wins
        {"metric": "fid1k", "results": {"fid1k": 350.0}, "network": str(run / "network-snapshot-000000.safetensors")},
        {"metric": "fid1k", "results": {"fid1k": 280.0}, "network": str(run / "network-snapshot-000001.safetensors")},
        {"metric": "fid1k", "results": {"fid1k": 290.0}, "network": str(run / "network-snapshot-000001.safetensors")},
        {"metric": "fid1k", "results": {"fid1k": 1.0}, "network": str(run / "unknown.safetensors")},
    ]  # fmt: skip
    (run / "metric-fid1k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return run


def test_metric_points_from_stats_and_results(tmp_path):
    figures = _tool("training_figures")
    run = _run_folder(tmp_path)
    assert figures.metric_points(run, "fid1k") == [(0.512, 350.0), (1.024, 300.0), (1.28, 290.0)]
    assert figures.metric_points(run, "kid1k") == []
    assert len(figures.read_jsonl(run / "stats.jsonl")) == 5  # the torn last line is dropped


def test_training_figures_writes_plots_and_grids(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image

    figures = _tool("training_figures")
    run = _run_folder(tmp_path)
    for name in ("reals.png", "fakes-000000.png", "fakes-000004.png"):
        Image.new("RGB", (8, 8), "white").save(run / name)
    out = tmp_path / "figures"
    monkeypatch.setattr(sys, "argv", ["training_figures.py", str(run), str(out), "--floor", "2.5"])
    figures.main()
    assert "350.0 at 0.512 kimg" in capsys.readouterr().out
    for name in ("fid.png", "curves.png", "reals.png", "fakes-first.png", "fakes-last.png"):
        assert (out / name).stat().st_size > 0, name
    assert Image.open(out / "curves.png").size == (1000, 800)
    assert (out / "fakes-last.png").read_bytes() == (run / "fakes-000004.png").read_bytes()


def test_training_figures_from_a_metric_file_draws_the_curve_only(tmp_path, monkeypatch, capsys):
    """The results of a run whose folder is gone: each line carries its kimg."""
    pytest.importorskip("matplotlib")
    figures = _tool("training_figures")
    lines = [{"metric": "fid1k", "results": {"fid1k": v}, "kimg": k, "network": f"gone/n{k}.safetensors"}
             for k, v in ((7.68, 286.8), (37.632, 67.6))]  # fmt: skip
    lines.append({"metric": "fid1k", "results": {"fid1k": 1.0}})
    results = tmp_path / "curve.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert figures.metric_points(results, "fid1k") == [(7.68, 286.8), (37.632, 67.6)]  # no kimg: left out
    out = tmp_path / "figures"
    monkeypatch.setattr(sys, "argv", ["training_figures.py", str(results), str(out), "--floor", "9.14"])
    figures.main()
    assert "67.6 at 37.632 kimg" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fid.png"]
    monkeypatch.setattr(sys, "argv", ["training_figures.py", str(results), str(out), "--metric", "kid1k"])
    with pytest.raises(SystemExit):
        figures.main()
    assert "has no kid1k results with a kimg" in capsys.readouterr().err


def test_training_figures_rejects_a_run_without_ticks(tmp_path, monkeypatch, capsys):
    figures = _tool("training_figures")
    monkeypatch.setattr(sys, "argv", ["training_figures.py", str(tmp_path), str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        figures.main()
    assert "has no ticks yet" in capsys.readouterr().err


def test_ship_network_stores_g_ema_in_float16(tmp_path, monkeypatch, capsys):
    import torch
    from safetensors import safe_open

    from cgsgan.assets import default_network
    from cgsgan.io import load_network, save_networks

    builtin = load_network()
    snapshot = tmp_path / "network-snapshot-000001.safetensors"  # a float32 snapshot with G_ema and a G
    save_networks(snapshot, {"G_ema": builtin, "G": builtin}, builtin.cfg)
    out = tmp_path / "shipped.safetensors"
    monkeypatch.setattr(sys, "argv", ["ship_network.py", str(snapshot), "--out", str(out)])
    _tool("ship_network").main()
    printed = capsys.readouterr().out
    assert "float16 vs float32, 8 frontal renders: mean 0.0e+00, max 0.000" in printed  # the built-in is float16
    with safe_open(str(out), "pt") as f:
        names = list(f.keys())
        assert names and all(n.startswith("G_ema.") for n in names)  # the generator only
        assert {f.get_tensor(n).dtype for n in names if f.get_tensor(n).is_floating_point()} == {torch.float16}
    shipped = load_network(out)
    for a, b in zip(shipped.state_dict().values(), load_network(default_network()).state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_side_views_show_magenta_around_the_head_and_report_holes(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    from cgsgan.assets import default_network

    out = tmp_path / "side.png"
    argv = ["side_views.py", str(default_network()), "--labels", "built-in", "--count", "1", "--holes", "2",
            "--scale", "1", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    _tool("side_views").main()
    caption = capsys.readouterr().out.splitlines()[0]
    assert caption.startswith("built-in: holes ") and caption.count("%") == 4  # one share per side yaw
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (4 + 16 + 64, 4 * 64, 3)  # caption strip, one head by four yaws at 64^2, margin
    views = image[16:80]
    assert (views[0, 0] == [255, 0, 255]).all() and (views[-1, -1] == [255, 0, 255]).all()  # background
    centre = views[32, 64 + 32]  # the -60 degree view: the head covers its middle
    assert not (centre == [255, 0, 255]).all()
    monkeypatch.setattr(sys, "argv", ["side_views.py", "a", "b", "--labels", "one"])
    with pytest.raises(SystemExit):
        _tool("side_views").main()
    assert "--labels gives 1 captions for 2 networks" in capsys.readouterr().err


def test_ship_network_whole_keeps_every_network_and_the_training_metadata(tmp_path, monkeypatch, capsys):
    import torch
    from safetensors import safe_open

    from cgsgan.io.checkpoint import read_metadata, read_state_dicts
    from cgsgan.train.snapshots import find_snapshot, imported_images

    snapshot = tmp_path / "network-snapshot-000001.safetensors"  # a float32 G_ema, G and D with training metadata
    _trained_snapshot(tmp_path, snapshot)
    out = tmp_path / "kept.safetensors"
    monkeypatch.setattr(sys, "argv", ["ship_network.py", str(snapshot), "--whole", "--out", str(out)])
    _tool("ship_network").main()
    assert "every network in float16" in capsys.readouterr().out
    assert read_metadata(out) == read_metadata(snapshot)
    before, after = read_state_dicts(snapshot), read_state_dicts(out)
    assert set(after) == {"G_ema", "G", "D"}
    for name, state in before.items():
        for key, value in state.items():
            kept = after[name][key]
            assert kept.dtype == (torch.float16 if value.is_floating_point() else value.dtype), key
            assert torch.allclose(kept.float(), value.float(), rtol=1e-3, atol=1e-4), key
    with safe_open(str(out), "pt") as f:
        assert len(list(f.keys())) == sum(len(s) for s in before.values())
    start = find_snapshot(out)  # a weights-only start that knows its image count and has its own D
    assert start.state is None and imported_images(out) == (8, "the file's metadata")
    monkeypatch.setattr(sys, "argv", ["ship_network.py", str(snapshot), "--whole"])  # never over the built-in
    with pytest.raises(SystemExit):
        _tool("ship_network").main()
    assert "--whole needs --out" in capsys.readouterr().err


def _trained_snapshot(tmp_path: Path, out: Path) -> None:
    """A run's snapshot after one step of tiny64 (batch 8) on noise heads, moved to ``out``."""
    from test_dataset import noise_heads

    from cgsgan.train import TrainConfig, Trainer
    from cgsgan.train.snapshots import save_snapshot

    trainer = Trainer(TrainConfig(preset="tiny64", batch=8, views=2), noise_heads(tmp_path / "heads"))
    trainer.step()
    save_snapshot(trainer, tmp_path / "run").rename(out)


def test_fresh_discriminator_trains_d_alone_and_saves_it(tmp_path, monkeypatch, capsys):
    import torch
    from test_dataset import noise_heads

    from cgsgan.assets import default_network
    from cgsgan.io.checkpoint import read_state_dicts

    tool = _tool("fresh_discriminator")
    data = str(noise_heads(tmp_path / "heads"))
    shipped = read_state_dicts(default_network())["G_ema"]
    plain, records = tool.warm_up(default_network(), 0.008, data, jitter=0.0, log=lambda _: None)
    jittered, jittered_records = tool.warm_up(default_network(), 0.008, data, jitter=0.5, log=lambda _: None)
    assert [r["step"] for r in records] == [1] and records[0]["kimg"] == 0.008  # one step of the preset's batch 8
    for trainer in (plain, jittered):  # the generator is the file's, bit for bit (w_avg included)
        for name, module in (("G", trainer.G), ("G_ema", trainer.G_ema)):
            state = module.state_dict()
            assert all(torch.equal(v.float(), state[k].float()) for k, v in shipped.items()), name
    # the same reals and D, other fakes: only the jittered heads' logits differ
    assert jittered_records[0]["D_real"] == records[0]["D_real"]
    assert jittered_records[0]["D_fake"] != records[0]["D_fake"]
    out = tmp_path / "warmed.safetensors"
    monkeypatch.setattr(sys, "argv", ["fresh_discriminator.py", str(default_network()), "--kimg", "0.016",
                                      "--data", data, "--window", "1", "--jitter", "0.1",
                                      "--records", str(tmp_path / "r.jsonl"), "--save", str(out)])  # fmt: skip
    tool.main()
    printed = capsys.readouterr().out
    assert printed.count("D_loss") == 2 and "jitter 0.1000" in printed and "jitter 0.0500" in printed
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2
    saved = read_state_dicts(out)
    assert set(saved) == {"G_ema", "G", "D"}
    assert all(torch.equal(v.float(), saved["G"][k].float()) for k, v in shipped.items())
    monkeypatch.setattr(sys, "argv", ["fresh_discriminator.py", str(default_network()), "--kimg", "0"])
    with pytest.raises(SystemExit):
        tool.main()
    assert "--kimg must be > 0" in capsys.readouterr().err
