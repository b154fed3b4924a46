"""Long runs lose nothing: snapshots as units, kept states, run folders, resume semantics, fine-tuning, flags."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_train import config, heads  # noqa: F401 (the fixture)

from cgsgan.cli import main
from cgsgan.io.checkpoint import read_metadata, save_networks
from cgsgan.train import TrainConfig, Trainer, TrainingError, find_snapshot, latest_snapshot, plan_run, train
from cgsgan.train.processes import check_device
from cgsgan.train.runs import new_run_dir
from cgsgan.train.snapshots import read_manifest, restore, save_snapshot
from cgsgan.train.trainer import reference_numerics


def quiet(_):
    pass


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ snapshots
def test_a_snapshot_torn_between_its_files_is_never_used(heads, tmp_path, monkeypatch):  # noqa: F811
    trainer = Trainer(config(), heads)
    trainer.step()
    first = save_snapshot(trainer, tmp_path)
    trainer.step()
    import cgsgan.train.snapshots as snapshots

    def fail(path, write):  # the state file's write dies (a kill, a full disk)
        raise OSError("disk full")

    monkeypatch.setattr(snapshots, "atomic_write", fail)
    with pytest.raises(OSError, match="disk full"):
        save_snapshot(trainer, tmp_path)
    monkeypatch.undo()
    # The network of step 2 was written under a name of its own; the manifest still names step 1 only.
    assert sorted(p.name for p in tmp_path.glob("network-snapshot-*")) == [
        "network-snapshot-000000-step00000002.safetensors",
        first.name,
    ]
    found = latest_snapshot(tmp_path)
    assert (found.network, found.step) == (first, 1)
    fresh = Trainer(config(), heads)
    restore(fresh, found)
    assert fresh.counters.step == 1


def test_two_snapshots_in_one_kimg_keep_their_own_files(heads, tmp_path):  # noqa: F811
    trainer = Trainer(config(), heads)
    names = []
    for _ in range(2):
        trainer.step()
        names.append(save_snapshot(trainer, tmp_path).name)
    assert names == ["network-snapshot-000000.safetensors", "network-snapshot-000000-step00000002.safetensors"]
    for name, step in zip(names, (1, 2), strict=True):
        snapshot = find_snapshot(tmp_path / name)
        fresh = Trainer(config(), heads)
        restore(fresh, snapshot)
        assert fresh.counters.step == step == json.loads(read_metadata(snapshot.network)["training"])["step"]


def test_a_state_that_belongs_to_another_step_is_refused(heads, tmp_path):  # noqa: F811
    trainer = Trainer(config(), heads)
    trainer.step()
    net = save_snapshot(trainer, tmp_path)
    trainer.step()
    other = save_snapshot(trainer, tmp_path)
    shutil.copy(other.with_name(other.name.replace("network-snapshot", "training-state").replace(".safetensors",
                                                                                               ".pt")),
                net.with_name("training-state-000000.pt"))  # fmt: skip
    with pytest.raises(ValueError, match="are not one snapshot .*manifest step 1, training state step 2"):
        restore(Trainer(config(), heads), find_snapshot(net))


def test_only_the_newest_training_states_are_kept(heads, tmp_path):  # noqa: F811
    trainer = Trainer(config(), heads)
    for _ in range(4):
        trainer.step()
        save_snapshot(trainer, tmp_path, keep=2)
    assert len(list(tmp_path.glob("network-snapshot-*.safetensors"))) == 4
    states = sorted(p.name for p in tmp_path.glob("training-state-*.pt"))
    entries = read_manifest(tmp_path)
    assert [e["step"] for e in entries] == [1, 2, 3, 4]
    assert [e["state"] for e in entries[:2]] == [None, None] and states == sorted(e["state"] for e in entries[2:])
    assert latest_snapshot(tmp_path).step == 4
    assert latest_snapshot(tmp_path, with_state=False).step == 4


# ------------------------------------------------------------------ kill and resume
def test_a_killed_run_resumes_with_one_stats_line_per_tick(heads, tmp_path, monkeypatch):  # noqa: F811
    cfg = config(kimg=0.032, tick_kimg=0.004, snapshot_ticks=3)  # a tick per step, a snapshot every 3
    original, calls = Trainer.step, []

    def dies_in_step_5(self):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # after ticks 1-4 were logged; the last snapshot is tick 3's
        return original(self)

    monkeypatch.setattr(Trainer, "step", dies_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, heads, log=quiet)
    monkeypatch.undo()
    assert [r["tick"] for r in stats(tmp_path)] == [1, 2, 3, 4]
    options = (tmp_path / "training_options.json").read_text()
    trainer = train(cfg, tmp_path, heads, log=quiet)
    assert trainer.counters.step == 8
    assert [r["tick"] for r in stats(tmp_path)] == list(range(1, 9))
    assert (tmp_path / "training_options.json").read_text() == options  # never rewritten
    (resumed,) = [json.loads(line) for line in (tmp_path / "resumes.jsonl").read_text().splitlines()]
    assert resumed["kimg"] == 0.012 and resumed["changed"] == {}


def test_non_finite_scenes_skip_the_step(heads, monkeypatch):  # noqa: F811
    trainer = Trainer(config(), heads)
    synthesis = trainer.G.synthesis

    def broken(ws, *args, **kwargs):
        scene, anchors = synthesis(ws, *args, **kwargs)
        scene.xyz = scene.xyz * float("nan")
        return scene, anchors

    monkeypatch.setattr(trainer.G, "synthesis", broken)
    before = trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"].clone()
    trainer.step()  # the renderer would raise on these scenes; the step is skipped instead
    assert trainer.counters.skipped == 1 and trainer.counters.images == 4
    assert torch.equal(trainer.G.state_dict()["point_gen.gaussians.xyz.0.weight"], before)


def test_an_image_truncated_during_training_is_skipped_and_counted(heads, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    shutil.copytree(heads, data)
    trainer_cfg = config(kimg=0.008, tick_kimg=0.008)
    run = tmp_path / "run"
    bad = data / "00003.png"
    original = Trainer.__init__

    def truncate_after_scan(self, *args, **kwargs):
        original(self, *args, **kwargs)
        bad.write_bytes(bad.read_bytes()[:60])  # after the scan: only a read finds it

    with pytest.MonkeyPatch.context() as m, pytest.warns(UserWarning, match="skipped .*00003.png: unreadable"):
        m.setattr(Trainer, "__init__", truncate_after_scan)
        lines = []
        train(trainer_cfg, run, data, log=lines.append)
    (row,) = stats(run)
    assert row["bad_files"] >= 1 and "unreadable files" in lines[-1]


# ------------------------------------------------------------------ fine-tuning imported weights
def imported(heads, path: Path, source: str = "official"):  # noqa: F811
    donor = Trainer(config(), heads)
    with torch.no_grad():  # an EMA that differs from G, as in any real snapshot
        for p in donor.G_ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_networks(path, {"G_ema": donor.G_ema, "G": donor.G, "D": donor.D}, donor.g_cfg, source=source,
                  discriminator=donor.d_cfg)  # fmt: skip
    return donor


def test_fine_tuning_keeps_the_imported_ema_and_drops_the_blur(heads, tmp_path):  # noqa: F811
    path = tmp_path / "weights.safetensors"
    donor = imported(heads, path, source="official snapshot network-snapshot-000300.pkl")
    logs = []
    trainer = train(config(kimg=301), tmp_path / "run", heads, log=logs.append, max_steps=1, resume_from=path)
    assert trainer.cfg.ema_rampup is None and trainer.cfg.blur_sigma == 0 and trainer.sigma == 0
    assert trainer.counters.images == 300_000 + 4  # the kimg from the official file name in the metadata
    assert any("from 300 kimg (from the file's metadata)" in line for line in logs)
    imported_ema = torch.cat([p.flatten() for p in donor.G_ema.parameters()])
    g = torch.cat([p.flatten() for p in donor.G.parameters()])
    ema = torch.cat([p.flatten() for p in trainer.G_ema.parameters()])
    assert (ema - imported_ema).norm() < 0.01 * (g - imported_ema).norm()  # one step moves it by ~0.3%
    blurred = train(config(kimg=301), tmp_path / "blur", heads, log=quiet, max_steps=0, resume_from=path,
                    resume_blur=True, resume_kimg=12)  # fmt: skip
    assert blurred.counters.images == 12_000 and blurred.sigma > 0


def test_own_runs_resume_with_ema_rampup_and_blur(heads, tmp_path):  # noqa: F811
    train(config(kimg=0.008), tmp_path / "a", heads, log=quiet)
    trainer = train(config(kimg=0.016), tmp_path / "b", heads, log=quiet, resume_from=tmp_path / "a", max_steps=0)
    assert trainer.cfg.ema_rampup == 0.05 and trainer.sigma > 0


def test_wrong_weights_are_one_clear_error(heads, tmp_path):  # noqa: F811
    from cgsgan.config import PRESETS, generator_config
    from cgsgan.models import build_generator
    from cgsgan.models.discriminator import Discriminator

    path = tmp_path / "small.safetensors"
    g_cfg = generator_config("tiny64")
    d_cfg = PRESETS["small128"].discriminator_config()
    save_networks(path, {"G": build_generator(g_cfg), "D": Discriminator(d_cfg)}, g_cfg, discriminator=d_cfg)
    with pytest.raises(ValueError, match="small.safetensors: D does not match the network"):
        train(config(), tmp_path / "run", heads, log=quiet, resume_from=path, max_steps=0)


# ------------------------------------------------------------------ run folders
def test_run_folders_are_numbered_and_never_reused(heads, tmp_path):  # noqa: F811
    first = plan_run(tmp_path, overrides={"data": str(heads), "batch": 4})
    second = plan_run(tmp_path, overrides={"data": str(heads), "batch": 4})
    assert (first.run_dir.name, second.run_dir.name) == (f"00000-tiny64-{heads.name}", f"00001-tiny64-{heads.name}")
    assert new_run_dir(tmp_path, "x").name == "00002-x"
    assert plan_run(tmp_path).run_dir.name == "00003-tiny64-synth"


def test_continuing_a_run_checks_settings_data_and_length(heads, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    cfg = config(kimg=0.008, data=str(heads))
    train(cfg, run, heads, log=quiet)
    plan = plan_run(tmp_path, resume=run, overrides={"kimg": 0.016, "keep": 3})
    assert plan.continuing and plan.run_dir == run and (plan.cfg.kimg, plan.cfg.keep) == (0.016, 3)
    with pytest.raises(TrainingError, match="is finished: it trained 0.008 of its 0.008 kimg; pass a longer"):
        plan_run(tmp_path, resume=run)
    with pytest.raises(TrainingError, match=r"other settings \(lr_g 0.0025 -> 0.001\)"):
        train(config(kimg=0.016, data=str(heads), lr_g=0.001), run, heads, log=quiet)
    other = tmp_path / "other"
    shutil.copytree(heads, other)
    with pytest.raises(TrainingError, match="was trained on .*--force-data"):
        train(config(kimg=0.016, data=str(other)), run, other, log=quiet, max_steps=0)
    train(config(kimg=0.016, data=str(other)), run, other, log=quiet, max_steps=0, force_data=True)
    with pytest.raises(TrainingError, match="nothing to train: the run is at 0.008 kimg"):
        train(config(kimg=0.008, data=str(heads)), tmp_path / "fresh", heads, log=quiet, resume_from=run)


def test_train_command_continues_a_run_in_place_and_refuses_a_finished_one(heads, tmp_path):  # noqa: F811
    args = ["train", "--data", str(heads), "--outdir", str(tmp_path), "--batch", "4", "--views", "2"]
    assert CliRunner().invoke(main, [*args, "--kimg", "0.004", "--tick", "0.004"]).exit_code == 0
    (run,) = tmp_path.iterdir()
    finished = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert finished.exit_code == 1 and "is finished" in finished.output and "Traceback" not in finished.output
    clash = CliRunner().invoke(main, ["train", "--resume", str(run), "--kimg", "0.008", "--glr", "0.001"])
    assert clash.exit_code == 1 and "other settings (lr_g 0.0025 -> 0.001)" in clash.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "banana"], "--device 'banana' is not a torch device"),
        (["--seed", str(2**32)], "is not in the range 0<=x<=4294967295"),
        (["--glr", "0"], "is not in the range x>0"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", "--outdir", str(tmp_path), *args])
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing created


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "--outdir", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 1 and "CUDA is not available here" in result.output
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_device("cuda:0")


def test_seed_range_is_checked_in_the_library():
    with pytest.raises(ValueError, match="seed must be in 0..4294967295"):
        TrainConfig(seed=2**32)


# ------------------------------------------------------------------ numerics and data
def test_reference_numerics_are_set_while_training_and_restored():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    with reference_numerics(config()):
        assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, False, True)
        assert matmul.allow_fp16_reduced_precision_reduction is False
    with reference_numerics(config(tf32=True)):
        assert matmul.allow_tf32 and cudnn.allow_tf32
    assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == before


def test_data_workers_give_the_same_batches(heads):  # noqa: F811
    one = Trainer(config(), heads)
    assert one.workers == 0  # a CPU run reads in the training process
    two = Trainer(config(workers=2), heads)
    for _ in range(3):
        (a, la), (b, lb) = one._reals(), two._reals()
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_snapshot_disk_benchmark_smoke():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "benchmarks/snapshots.py", "--smoke"], cwd=root, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| tiny64")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    network_mb, state_mb = float(cells[3]), float(cells[4])
    assert 30 < network_mb < 60 and 40 < state_mb < 90  # 2.7 M + 2.7 M + 5.3 M float32; Adam: 2 moments of G and D


def test_a_run_stopped_before_its_first_snapshot_starts_again_from_its_file(heads, tmp_path):  # noqa: F811
    path = tmp_path / "weights.safetensors"
    imported(heads, path, source="official snapshot network-snapshot-000300.pkl")
    run = tmp_path / "run"
    train(config(kimg=301), run, heads, log=quiet, max_steps=0, resume_from=path, resume_kimg=200)
    assert not list(run.glob("network-snapshot-*"))  # "killed" before its first snapshot
    again = train(config(kimg=301).fine_tuning(), run, heads, log=quiet, max_steps=0)
    assert again.counters.images == 200_000 and again.cfg.ema_rampup is None  # not a fresh start


def test_own_weights_without_state_keep_their_config(heads, tmp_path):  # noqa: F811
    train(config(kimg=0.008, seed=5), tmp_path / "a", heads, log=quiet)
    network = latest_snapshot(tmp_path / "a").network
    network.with_name(network.name.replace("network-snapshot", "training-state").replace(".safetensors", ".pt")
                      ).unlink()  # fmt: skip
    plan = plan_run(tmp_path / "runs", resume=network, overrides={"kimg": 0.016})
    assert (plan.cfg.seed, plan.cfg.batch, plan.cfg.views) == (5, 4, 2)
    relative = plan_run(tmp_path / "runs", overrides={"data": "some/where"}, create=False)
    assert Path(relative.cfg.data).is_absolute()  # a run continues from any working directory


def test_orphans_and_torn_lines_are_cleaned_up(heads, tmp_path):  # noqa: F811
    from cgsgan.train.progress import trim_stats

    trainer = Trainer(config(), heads)
    trainer.step()
    save_snapshot(trainer, tmp_path, keep=1)
    orphan = tmp_path / "training-state-000007.pt"  # of a snapshot that never got listed
    orphan.write_bytes(b"x")
    trainer.step()
    save_snapshot(trainer, tmp_path, keep=1)
    assert not orphan.exists() and len(list(tmp_path.glob("training-state-*.pt"))) == 1
    (tmp_path / "stats.jsonl").write_text('{"tick": 1}\n{"tick": 2}\n{"ti')  # killed mid-line
    assert trim_stats(tmp_path, 1) == 2 and (tmp_path / "stats.jsonl").read_text() == '{"tick": 1}\n'


def test_fine_tuning_flags_need_a_file_to_fine_tune(tmp_path):
    result = CliRunner().invoke(main, ["train", "--outdir", str(tmp_path), "--resume-kimg", "10"])
    assert result.exit_code == 2 and "apply to --resume FILE" in result.output
