import importlib.util
import json
import socket
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from test_dataset import noise_heads

from cgsgan.io.checkpoint import load_discriminator, load_network, save_networks
from cgsgan.train import (
    Process,
    TrainConfig,
    Trainer,
    TrainingError,
    find_snapshot,
    latest_snapshot,
    load_official_optimizers,
    train,
)
from cgsgan.train.progress import write_grid

RES = 64


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Eight 64x64 images with masks and labels: enough for the loop's mechanics."""
    return noise_heads(tmp_path_factory.mktemp("heads"))


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


def test_a_discriminator_only_step_leaves_the_generator_alone(heads):
    frozen, full = Trainer(config(), heads), Trainer(config(), heads)
    g_before = {k: v.clone() for k, v in frozen.G.state_dict().items()}
    ema_before = {k: v.clone() for k, v in frozen.G_ema.state_dict().items()}
    d_before = frozen.D.state_dict()["b4.out.weight"].clone()
    stats = frozen.step(train_g=False)
    assert "G_loss" not in stats and {"D_loss", "D_real", "D_fake", "R1"} <= set(stats)
    for before, module in ((g_before, frozen.G), (ema_before, frozen.G_ema)):  # w_avg included
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(frozen.D.state_dict()["b4.out.weight"], d_before)
    assert frozen.counters.images == 4 and frozen.counters.step == 1
    # the same reals as a full step's D phase: D's logits on them agree before either D moved
    assert stats["D_real"] == pytest.approx(full.step()["D_real"], rel=1e-5)


def test_a_bfloat16_generator_trains_near_the_float32_one(heads):
    trainers = [Trainer(config(), heads), Trainer(config(g_precision="bfloat16"), heads)]
    first = [t.step() for t in trainers]  # same weights, same draws: only the generator's arithmetic differs
    for key in ("G_loss", "knn", "center", "D_fake"):
        assert first[1][key] == pytest.approx(first[0][key], rel=0.05, abs=1e-3), key
    half = trainers[1]
    assert all(p.dtype == torch.float32 for p in half.G.parameters())  # autocast: float32 weights and state
    assert half.G.mapping_network.w_avg.dtype == torch.float32 and half.G.mapping_network.w_avg.isfinite().all()
    assert np.isfinite(list(half.step().values())).all()
    with pytest.raises(ValueError, match="float16 would need loss scaling"):
        TrainConfig(g_precision="float16")


def test_an_interrupted_run_resumes_to_the_same_losses(heads, tmp_path):
    cfg = config(kimg=0.024)  # 6 steps, snapshots every 2 steps
    whole = tmp_path / "whole"
    logs = []
    train(cfg, whole, heads, log=logs.append)
    parts = tmp_path / "parts"
    train(cfg, parts, heads, log=lambda _: None, max_steps=4)  # "killed" after the snapshot at step 4
    assert latest_snapshot(parts).network.name == "network-snapshot-000000.safetensors"
    resumed = []
    train(cfg, parts, heads, log=resumed.append)
    assert resumed[0].startswith("resumed from network-snapshot-000000.safetensors at 0.016 kimg")

    def losses(run):
        rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        return {(r["tick"], round(r["kimg"], 3)): (r["G_loss"], r["D_loss"]) for r in rows}

    assert losses(parts) == losses(whole)
    last = "network-snapshot-000000-step00000006.safetensors"  # a second snapshot within kimg 0
    assert latest_snapshot(whole).network.name == latest_snapshot(parts).network.name == last
    a, b = load_network(whole / last), load_network(parts / last)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert load_discriminator(whole / "network-snapshot-000000.safetensors").cfg.channel_base == 4096


def test_non_finite_steps_are_skipped_then_training_stops(heads, monkeypatch):
    trainer = Trainer(config(max_bad_steps=2), heads)
    monkeypatch.setattr("cgsgan.train.trainer.generator_loss", lambda logits: logits.sum() * float("nan"))
    before = trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"].clone()
    trainer.step()
    assert trainer.counters.skipped == 1
    assert torch.equal(trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"], before)
    with pytest.raises(TrainingError, match="2 steps in a row had non-finite"):
        trainer.step()


def test_bad_configs_are_named(heads):
    with pytest.raises(ValueError, match="multiple of 4"):
        TrainConfig(batch=6)
    with pytest.raises(ValueError, match="batch_gpu"):
        TrainConfig(batch=8, batch_gpu=6)
    with pytest.raises(ValueError, match="split into multiples of 4 over 3 processes"):
        Trainer(config(batch=8), heads, process=Process(0, 3))
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="huge")
    with pytest.raises(ValueError, match="views"):
        TrainConfig(batch=4, views=8)


def test_train_command_runs_logs_and_snapshots(heads, tmp_path, tmp_path_factory):
    from click.testing import CliRunner

    from cgsgan.cli import main

    args = ["train", "--data", str(heads), "--outdir", str(tmp_path), "--kimg", "0.008", "--batch", "4", "--views", "2"]
    result = CliRunner().invoke(main, [*args, "--tick", "0.004"])
    assert result.exit_code == 0, result.output
    assert "tick    1  kimg    0.004" in result.output and "done: 0.008 kimg" in result.output
    run = tmp_path / f"00000-tiny64-{heads.name}"
    assert (run / "network-snapshot-000000.safetensors").is_file() and (run / "stats.jsonl").is_file()
    grid = iio.imread(run / "fakes-000000.png")
    assert grid.shape == (3 * RES, 3 * RES, 3) and iio.imread(run / "reals.png").shape == grid.shape  # 8 images, 3 x 3
    # the run's grid comes back from its network file, seed and data alone (tools/run_grid.py)
    spec = importlib.util.spec_from_file_location("run_grid", Path(__file__).parents[1] / "tools" / "run_grid.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fakes, reals = tool.run_grid(run / "network-snapshot-000000.safetensors", heads, seed=0)
    folder = tmp_path_factory.mktemp("grid")
    write_grid(folder / "fakes.png", fakes)
    write_grid(folder / "reals.png", reals)
    assert np.array_equal(iio.imread(folder / "reals.png"), iio.imread(run / "reals.png"))
    assert np.abs(iio.imread(folder / "fakes.png").astype(int) - grid).max() <= 1
    again = CliRunner().invoke(main, ["train", "--resume", str(run), "--kimg", "0.012"])
    assert "resumed from network-snapshot-000000.safetensors at 0.008 kimg" in again.output
    assert "done: 0.012 kimg" in again.output and sorted(p.name for p in tmp_path.iterdir()) == [run.name]


def test_presets_carry_their_training_defaults():
    cfg = TrainConfig.for_preset("tiny64", kimg=3, batch=None)
    assert (cfg.kimg, cfg.batch, cfg.blur_sigma, cfg.blur_fade_kimg) == (3, 8, 2.0, 16)  # None keeps the default
    from cgsgan.config import find_preset, generator_config

    assert find_preset(generator_config("ffhqc2048", revision="v1")) == "ffhqc2048"
    assert find_preset(generator_config("tiny64", num_points=128)) is None
    official = TrainConfig.for_preset("ffhqc512")
    assert (official.kimg, official.blur_sigma, official.blur_fade_kimg, official.tick_kimg) == (15000, 10, 200, 1)


# ------------------------------------------------------------------ distributed
def _record_gradients(trainer: Trainer) -> list[list[torch.Tensor]]:
    """Every optimiser step's (clipped, averaged) gradients, in order."""
    recorded = []
    for opt in (trainer.opt_g, trainer.opt_d):
        original = opt.step

        def step(*args, _opt=opt, _original=original, **kwargs):
            recorded.append([p.grad.clone() for group in _opt.param_groups for p in group["params"]])
            return _original(*args, **kwargs)

        opt.step = step
    return recorded


def _distributed_worker(rank: int, world: int, heads, out, init: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        trainer = Trainer(config(batch=8, views=2), heads, process=Process.current())
        trainer.broadcast()
        grads = _record_gradients(trainer)
        trainer.step()
        if rank == 0:
            torch.save({"grads": grads, "G": trainer.G.state_dict()}, out)
        if rank == 1:  # a non-finite scene on one process only: every process skips the step, none waits
            synthesis = trainer.G.synthesis

            def broken(ws, *args, **kwargs):
                scene, anchors = synthesis(ws, *args, **kwargs)
                scene.xyz = scene.xyz * float("nan")
                return scene, anchors

            trainer.G.synthesis = broken
        trainer.step()
        Path(f"{out}.{rank}.skipped").write_text(str(trainer.counters.skipped))
        trainer.counters.step += rank  # as if rank 1 had resumed from another snapshot
        try:
            trainer.broadcast()
        except TrainingError as e:
            Path(f"{out}.{rank}.error").write_text(str(e))
        dist.barrier()  # no process tears its connections down while another still uses them
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_compute_the_gradients_of_one_process(heads, tmp_path):
    """2 ranks x 4 samples == 1 process with the batch of 8 in passes of 4: same data, draws and mean gradients."""
    out = tmp_path / "rank0.pt"
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        init = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    torch.multiprocessing.spawn(_distributed_worker, args=(2, heads, out, init), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=True)
    for rank in range(2):  # a mismatch of resume points is caught on every process
        assert "resumed from different snapshots" in Path(f"{out}.{rank}.error").read_text()
        assert Path(f"{out}.{rank}.skipped").read_text() == "1"

    single = Trainer(config(batch=8, views=2, batch_gpu=4), heads)
    grads = _record_gradients(single)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same reduction orders inside each kernel
    try:
        single.step()
    finally:
        torch.set_num_threads(threads)
    assert len(grads) == len(ranks["grads"]) == 3  # G, D and (step 0) lazy R1
    for ours, theirs in zip(grads, ranks["grads"], strict=True):
        a, b = torch.cat([g.flatten() for g in ours]), torch.cat([g.flatten() for g in theirs])
        assert a.norm() > 0 and (a - b).norm() / a.norm() < 1e-6
    for k, v in single.G.named_parameters():  # w_avg (a buffer) follows each process's own fakes, as the reference
        torch.testing.assert_close(ranks["G"][k], v.detach(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ resume from elsewhere
def test_resume_from_another_runs_snapshot_continues_its_state(heads, tmp_path):
    first = tmp_path / "first"
    train(config(kimg=0.008), first, heads, log=lambda _: None)
    found = find_snapshot(first)
    net, state = found.network, found.state
    assert find_snapshot(net) == found and found.step == 2
    logs = []
    trainer = train(config(kimg=0.016), tmp_path / "second", heads, log=logs.append, resume_from=first)
    assert logs[0].startswith(f"resumed from {net} at 0.008 kimg")
    assert trainer.counters.images == 16 and trainer.counters.step == 4
    with pytest.raises(FileNotFoundError, match="holds no network-snapshot"):
        find_snapshot(tmp_path)
    with pytest.raises(ValueError, match="convert .pkl"):
        find_snapshot(state)


def test_a_run_from_a_snapshot_trains_at_its_own_rates_and_d_capacity(heads, tmp_path):
    first = tmp_path / "first"
    train(config(kimg=0.008), first, heads, log=lambda _: None)
    cfg = config(kimg=0.016, lr_g=0.005, lr_d=0.001, xyz_lr_scale=0.1)
    trainer = train(cfg, tmp_path / "second", heads, log=lambda _: None, max_steps=0, resume_from=first)
    assert trainer.counters.images == 8 and trainer.opt_g.state  # the snapshot's moments, the new rates:
    assert [g["lr"] for g in trainer.opt_g.param_groups] == pytest.approx([0.005, 0.0005])
    # StyleGAN2's lazy-regularisation adjustment for R1 every 2 steps: lr and betas times 2 / 3
    (group,) = trainer.opt_d.param_groups
    assert group["lr"] == pytest.approx(0.001 * 2 / 3) and group["betas"][1] == pytest.approx(0.99 ** (2 / 3))
    wide = Trainer(config(d_channel_base=8192, d_channel_max=128), heads)
    assert wide.D.state_dict()["b64.conv0.weight"].shape == (128, 128, 3, 3)  # min(8192 / 64, 128)
    assert Trainer(config(), heads).D.state_dict()["b64.conv0.weight"].shape == (64, 64, 3, 3)  # tiny64: 4096 / 64
    with pytest.raises(ValueError, match=r"000000.safetensors: D does not match the network: wrong shape"):
        train(config(kimg=0.016, d_channel_base=8192), tmp_path / "third", heads, log=lambda _: None,
              max_steps=0, resume_from=first)  # fmt: skip
    with pytest.raises(ValueError, match=r"d_channel_base must be >= the resolution \(64\)"):
        config(d_channel_base=32)


def test_a_shipped_generator_only_file_fine_tunes_against_a_fresh_discriminator(heads, tmp_path):
    """A network as the package ships it (G_ema only, float16): G and G_ema start from it, D from its init."""
    donor = Trainer(config(), heads)
    donor.step()
    half = {k: v.half() if v.is_floating_point() else v for k, v in donor.G_ema.state_dict().items()}
    path = save_networks(tmp_path / "shipped.safetensors", {"G_ema": half}, donor.g_cfg)
    logs = []
    trainer = train(config(kimg=0.012), tmp_path / "run", heads, log=logs.append, max_steps=0, resume_from=path,
                    resume_kimg=0.008)  # fmt: skip
    assert "shipped.safetensors holds G_ema only (a shipped network): G starts as a copy of it" in logs
    assert "shipped.safetensors has no D: the discriminator starts from random weights" in logs
    assert trainer.counters.images == 8
    for net in (trainer.G, trainer.G_ema):
        for k, v in net.state_dict().items():
            assert torch.equal(v, half[k].to(v.dtype)), k
    fresh = Trainer(config(), heads)  # the same seed: D is the one a new run starts with
    assert all(torch.equal(v, fresh.D.state_dict()[k]) for k, v in trainer.D.state_dict().items())
    trainer.step()
    assert trainer.counters.images == 12


def test_imported_weights_resume_with_official_optimizer_states(heads, tmp_path):
    """A converted official snapshot: weights plus <file>.optim.pt holding Gboth_opt / Dmain_opt."""
    donor = Trainer(config(), heads)
    donor.step()
    path = tmp_path / "network-snapshot-000012.safetensors"
    save_networks(path, {"G_ema": donor.G_ema, "G": donor.G, "D": donor.D}, donor.g_cfg, source="official",
                  discriminator=donor.d_cfg)  # fmt: skip
    official = {"Gboth_opt": donor.opt_g.state_dict(), "Dmain_opt": donor.opt_d.state_dict()}
    torch.save(official, path.with_name(path.name + ".optim.pt"))
    logs = []
    trainer = train(config(kimg=12.004), tmp_path / "run", heads, log=logs.append, max_steps=0, resume_from=path)
    assert "optimiser states from network-snapshot-000012.safetensors.optim.pt" in logs
    assert trainer.counters.images == 12_000
    moments = [trainer.opt_g.state[p]["exp_avg"] for p in trainer.opt_g.param_groups[0]["params"][:3]]
    expected = [donor.opt_g.state[p]["exp_avg"] for p in donor.opt_g.param_groups[0]["params"][:3]]
    assert all(torch.equal(a, b) for a, b in zip(moments, expected, strict=True))
    shuffled = {
        **official,
        "Gboth_opt": {**official["Gboth_opt"], "param_groups": official["Gboth_opt"]["param_groups"][::-1]},
    }
    with pytest.raises(ValueError, match="G: the official optimiser state does not line up"):
        load_official_optimizers(trainer, shuffled)
    with pytest.raises(ValueError, match="need a G and a D entry"):
        load_official_optimizers(trainer, {"Gboth_opt": official["Gboth_opt"]})


def test_train_command_under_torchrun_writes_from_rank_0_only(heads, tmp_path):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "cgsgan", "train", "--data", str(heads), "--outdir", str(tmp_path), "--kimg", "0.008",
               "--batch", "8", "--views", "2", "--tick", "0.008"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("(2 processes)") == 1 and result.stdout.count("done: 0.008 kimg") == 1
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]  # one folder, named by rank 0 for both
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["kimg"] == 0.008 and np.isfinite(rows[0]["G_loss"])
    assert json.loads((run / "training_options.json").read_text())["processes"] == 2
    assert (run / "network-snapshot-000000.safetensors").is_file()


def test_train_command_resumes_another_run_with_its_settings(heads, tmp_path):
    from click.testing import CliRunner

    from cgsgan.cli import main

    args = ["train", "--data", str(heads), "--batch", "4", "--views", "2", "--tick", "0.004", "--seed", "3"]
    assert CliRunner().invoke(main, [*args, "--outdir", str(tmp_path / "first"), "--kimg", "0.004"]).exit_code == 0
    (first,) = (tmp_path / "first").iterdir()
    snapshot = first / "network-snapshot-000000.safetensors"
    result = CliRunner().invoke(main, ["train", "--resume", str(snapshot), "--outdir", str(tmp_path / "second"),
                                       "--kimg", "0.008"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "done: 0.008 kimg" in result.output
    (second,) = (tmp_path / "second").iterdir()
    options = json.loads((second / "training_options.json").read_text())["config"]
    assert (options["seed"], options["batch"], options["views"], options["kimg"]) == (3, 4, 2, 0.008)
    clash = CliRunner().invoke(
        main, ["train", "--resume", str(snapshot), "--outdir", str(tmp_path / "x"), "--preset", "small128"]
    )
    assert clash.exit_code != 0 and "was trained with --preset tiny64" in clash.output


def test_wandb_without_the_package_is_a_clear_error(heads, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cgsgan.cli import main

    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import wandb -> ImportError
    args = ["train", "--data", str(heads), "--outdir", str(tmp_path), "--kimg", "0.004", "--batch", "4"]
    result = CliRunner().invoke(main, [*args, "--wandb", "heads"])
    assert result.exit_code == 1 and "--wandb needs the wandb package: pip install wandb" in result.output


def test_peak_memory_counts_what_the_process_touched():
    from cgsgan.train.progress import peak_memory_gb

    cpu = torch.device("cpu")
    before = peak_memory_gb(cpu)
    block = np.ones(2**29 // 8)  # 512 MB, touched
    status = Path("/proc/self/status").read_text().splitlines()
    rss = int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 2**20
    del block
    assert peak_memory_gb(cpu) >= max(before, rss) - 1e-3 and peak_memory_gb(cpu) > 0.5


def test_tensorboard_gets_the_tick_scalars_when_installed(heads, tmp_path):
    pytest.importorskip("torch.utils.tensorboard")  # needs the tensorboard package
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(config(kimg=0.008), tmp_path, heads, log=lambda _: None)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    g_loss = events.Scalars("G_loss")
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [e.step for e in g_loss] == [round(r["kimg"] * 1000) for r in rows]
    assert [e.value for e in g_loss] == pytest.approx([r["G_loss"] for r in rows])


def test_train_command_takes_preset_and_revision_from_imported_weights(heads, tmp_path):
    from click.testing import CliRunner

    from cgsgan.cli import main
    from cgsgan.config import PRESETS, generator_config
    from cgsgan.models import build_generator
    from cgsgan.models.discriminator import Discriminator

    g_cfg = generator_config("tiny64", revision="v1")
    path = tmp_path / "imported.safetensors"  # weights only, as `cgsgan convert` writes them
    save_networks(path, {"G": build_generator(g_cfg), "D": Discriminator(PRESETS["tiny64"].discriminator_config())},
                  g_cfg, discriminator=PRESETS["tiny64"].discriminator_config())  # fmt: skip
    args = ["train", "--resume", str(path), "--data", str(heads), "--kimg", "0.004", "--batch", "4", "--views", "2"]
    result = CliRunner().invoke(main, [*args, "--outdir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "no optimiser states next to imported.safetensors: Adam starts fresh" in result.output
    (run,) = (tmp_path / "runs").iterdir()
    options = json.loads((run / "training_options.json").read_text())["config"]
    assert (options["preset"], options["revision"]) == ("tiny64", "v1")
    assert (options["ema_rampup"], options["blur_sigma"]) == (None, 0.0)  # fine-tuning, as the reference
    clash = CliRunner().invoke(main, [*args, "--outdir", str(tmp_path / "x"), "--preset", "small128"])
    assert clash.exit_code != 0 and "holds a tiny64 generator, not small128" in clash.output


def test_passes_and_seeds_draw_different_fakes(heads):
    # torch's CPU generator keeps only 32 bits of its seed: keys packed by shifts above bit 32 were lost,
    # so every pass (and every process) of a step drew the same z, and the seed did not change the fakes.
    trainer = Trainer(config(batch=8, batch_gpu=4), heads)
    z0, labels0, _ = trainer._fakes(0, 0)
    z1, _, _ = trainer._fakes(0, 1)
    assert not torch.allclose(z0, z1)
    assert not torch.allclose(z0, trainer._fakes(1, 0)[0])  # G and D phases differ
    other = Trainer(config(batch=8, batch_gpu=4, seed=1), heads)
    assert not torch.allclose(z0, other._fakes(0, 0)[0])
    assert torch.equal(z0, Trainer(config(batch=8, batch_gpu=4), heads)._fakes(0, 0)[0])  # reproducible


def test_metrics_at_snapshots(heads, tmp_path, monkeypatch):
    pytest.importorskip("torchmetrics")
    from test_metrics import NvidiaLayout, TinyLayers

    monkeypatch.setenv("CGSGAN_CACHE", str(tmp_path / "cache"))
    inception = tmp_path / "inception-like.pt"
    torch.jit.save(torch.jit.script(NvidiaLayout(TinyLayers())), str(inception))
    run = tmp_path / "run"
    lines = []
    cfg = config(metrics=("fid8_full", "kid8_full"), tick_kimg=0.004)
    train(cfg, run, heads, log=lines.append, max_steps=4, inception=inception)
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    snapshots = sorted(p.name for p in run.glob("network-snapshot-*.safetensors"))
    assert [("fid8_full" in s) for s in stats] == [False, True, False, True]  # snapshot every 2nd tick
    measured = [json.loads(x) for x in (run / "metric-fid8_full.jsonl").read_text().splitlines()]
    assert len(measured) == 2 and {m["snapshot"] for m in measured} <= set(snapshots)
    assert [m["kimg"] for m in measured] == [0.008, 0.016] and all(m["results"]["fid8_full"] > 0 for m in measured)
    assert (run / "metric-kid8_full.jsonl").is_file()
    best = json.loads((run / "best-snapshot.json").read_text())
    assert best["metric"] == "fid8_full" and best["snapshot"] in snapshots
    assert best["value"] == min(m["results"]["fid8_full"] for m in measured)
    assert any("fid8_full" in line for line in lines)


def test_metric_defaults_and_names():
    assert TrainConfig.for_preset("tiny64").metrics == ()
    assert TrainConfig.for_preset("ffhqc512").metrics == ("fid20k_full",)
    with pytest.raises(ValueError, match="unknown metric 'fid_20k'"):
        config(metrics=("fid_20k",))
    stored = {k: v for k, v in config().to_dict().items() if k != "metrics"}  # saved before metrics existed
    assert TrainConfig.from_dict(stored).metrics == ()


def test_white_background_ablation_composites_fakes_and_reals_over_white(heads):
    trainer = Trainer(config(background="white"), heads)
    _, _, backgrounds = trainer._fakes(0, 0)
    assert torch.equal(backgrounds, torch.ones_like(backgrounds)) and trainer.data.background == "white"
    assert Trainer(config(), heads)._fakes(0, 0)[2].std() > 0.1  # the default: random colours
    with pytest.raises(ValueError, match="background must be one of random, white"):
        config(background="black")
