import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from test_dataset import labels_for

from cgsgan.io.checkpoint import load_discriminator, load_network
from cgsgan.train.loop import TrainConfig, Trainer, TrainingError, latest_snapshot, train

RES = 64


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Eight 64x64 images with masks and labels: enough for the loop's mechanics."""
    root = tmp_path_factory.mktemp("heads")
    (root / "mask").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(labels_for(8)):
        name = f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (RES, RES, 3), dtype=np.uint8)).save(root / name)
        mask = np.zeros((RES, RES), np.uint8)
        mask[8:56, 12:52] = 255
        Image.fromarray(mask).save(root / "mask" / name)
        rows.append([name, label])
    (root / "dataset.json").write_text(json.dumps({"labels": rows}))
    return root


def config(**overrides):
    base = dict(preset="tiny64", batch=4, views=2, kimg=1, tick_kimg=0.008, snapshot_ticks=2, r1_interval=2)
    return TrainConfig(**{**base, **overrides})


def test_steps_update_everything_and_stats_are_finite(heads):
    trainer = Trainer(config(), heads)
    g_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    d_before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    stats = [trainer.step() for _ in range(2)]
    assert all(np.isfinite(v) for s in stats for v in s.values())
    assert "R1" in stats[0] and "R1" not in stats[1]  # lazy R1 on every second step here
    assert trainer.counters.images == 8 and trainer.counters.step == 2
    assert not torch.equal(
        trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"], g_before["point_gen.gaussians.xyz.0.weight"]
    )
    assert not torch.equal(trainer.D.state_dict()["b4.out.weight"], d_before["b4.out.weight"])
    assert not torch.equal(trainer.G.mapping_network.w_avg, g_before["mapping_network.w_avg"])  # D phase updates it
    assert stats[0]["blur_sigma"] == pytest.approx(10.0)


def test_an_interrupted_run_resumes_to_the_same_losses(heads, tmp_path):
    cfg = config(kimg=0.024)  # 6 steps, snapshots every 2 steps
    whole = tmp_path / "whole"
    logs = []
    train(cfg, whole, heads, log=logs.append)
    parts = tmp_path / "parts"
    train(cfg, parts, heads, log=lambda _: None, max_steps=4)  # "killed" after the snapshot at step 4
    assert latest_snapshot(parts)[0].name == "network-snapshot-000000.safetensors"
    resumed = []
    train(cfg, parts, heads, log=resumed.append)
    assert resumed[0].startswith("resumed from network-snapshot-000000.safetensors at 0.016 kimg")

    def losses(run):
        rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        return {(r["tick"], round(r["kimg"], 3)): (r["G_loss"], r["D_loss"]) for r in rows}

    assert losses(parts) == losses(whole)
    a, b = (
        load_network(whole / "network-snapshot-000000.safetensors"),
        load_network(parts / "network-snapshot-000000.safetensors"),
    )
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert load_discriminator(whole / "network-snapshot-000000.safetensors").cfg.channel_base == 4096


def test_non_finite_steps_are_skipped_then_training_stops(heads, monkeypatch):
    trainer = Trainer(config(max_bad_steps=2), heads)
    monkeypatch.setattr("cgsgan.train.loop.generator_loss", lambda logits: logits.sum() * float("nan"))
    before = trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"].clone()
    trainer.step()
    assert trainer.counters.skipped == 1
    assert torch.equal(trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"], before)
    with pytest.raises(TrainingError, match="2 steps in a row had non-finite"):
        trainer.step()


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="multiple of 4"):
        TrainConfig(batch=6)
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="huge")
    with pytest.raises(ValueError, match="views"):
        TrainConfig(batch=4, views=8)


def test_train_command_runs_logs_and_snapshots(heads, tmp_path):
    from click.testing import CliRunner

    from cgsgan.cli import main

    run = tmp_path / "run"
    args = ["train", "--data", str(heads), "--out", str(run), "--kimg", "0.008", "--batch", "4", "--views", "2"]
    result = CliRunner().invoke(main, [*args, "--tick", "0.004"])
    assert result.exit_code == 0, result.output
    assert "tick    1  kimg    0.004" in result.output and "done: 0.008 kimg" in result.output
    assert (run / "network-snapshot-000000.safetensors").is_file() and (run / "stats.jsonl").is_file()
    grid = iio.imread(run / "fakes-000000.png")
    assert grid.shape == (3 * RES, 3 * RES, 3) and iio.imread(run / "reals.png").shape == grid.shape  # 8 images, 3 x 3
    again = CliRunner().invoke(main, [*args, "--kimg", "0.012", "--tick", "0.004"])
    assert "resumed from network-snapshot-000000.safetensors at 0.008 kimg" in again.output
