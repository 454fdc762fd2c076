"""`trd train` for real: small generated folders with odd images, the run directory, the JSON contract."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA, InterruptAfter, epoch_counts, make_image_folder, ran
from test_data import write_bad_images, write_odd_images
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.errors import DataError, RunDirError, TrainingInterrupted
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.observer import TrainObserver
from trdcli.run.rundir import load_model
from trdcli.run.train import train

runner = CliRunner()

SHARED_KEYS = {
    "arch", "num_classes", "full_px", "schedule", "seed", "epochs", "batch_size", "steps",
    "forward_flops_per_image", "train_flops_per_image", "steps_by_px", "train_flops",
    "baseline_train_flops", "compute_fraction", "compute_saved_frac",
}  # fmt: skip
TRAIN_KEYS = {"metrics", "history", "wall_time_s", "versions", "device"}


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """Three shape classes plus every awkward file kind, one truncated JPEG and one non-image."""
    root = make_image_folder(tmp_path_factory.mktemp("odd") / "data", n_train=8, n_valid=3, px=48)
    write_odd_images(root / "train" / "circle" / "odd")
    write_bad_images(root / "train" / "square")
    (root / "train" / "triangle" / "README.txt").write_text("not an image")
    return root


def test_unreadable_images_stop_the_run_with_their_names(odd_folder, tmp_path):
    result = runner.invoke(cli.app, ["train", str(odd_folder), "--size", "64", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "2 unreadable image(s)" in result.stderr
    assert "truncated.jpg" in result.stderr and "--skip-bad-images" in result.stderr
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


@pytest.fixture(scope="module")
def trained(odd_folder, tmp_path_factory):
    """A real run: 2 epochs of ResNet-18 at 64 px with TRD at 32 px (prob 0.5), skipping the bad images."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["train", str(odd_folder), "--arch", "resnet18", "--size", "64", "--batch-size", "8", "--epochs", "2"]
    args += ["--low-res", "32", "--until", "1.0", "--prob", "0.5", "--seed", "4", "--workers", "1", "--skip-bad-images"]
    args += ["--out", str(out), "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out, result


def test_json_has_every_documented_key(trained):
    payload, _, _ = trained
    assert set(payload) >= SHARED_KEYS | TRAIN_KEYS
    assert payload["arch"] == "resnet18" and payload["num_classes"] == 3 and payload["full_px"] == 64
    assert payload["schedule"] == {
        "name": "trd",
        "kind": "TRDSchedule",
        "low_px": 32,
        "until_frac": 1.0,
        "prob": 0.5,
        "seed": 4,
    }
    assert (payload["seed"], payload["epochs"], payload["batch_size"]) == (4, 2, 8)
    # 8 shapes x 3 classes + 8 odd images = 32 training images, batches of 8: 4 steps per epoch.
    assert payload["train_images"] == 32 and payload["steps"] == 8
    assert set(payload["metrics"]) == {"top1", "train_loss", "valid_loss"}  # 3 classes: no top-5
    # top-1 is measured after the default BatchNorm recalibration (TRD steps ran): 8 batches asked,
    # the 4 of an epoch there are, 32 images forward at 64 px. It is a whole number of images right.
    forward_64 = payload["forward_flops_per_image"]["64"]
    assert payload["bn_recalibration_flops"] == 32 * forward_64
    top1, valid = payload["metrics"]["top1"], payload["valid_images"]
    assert top1 * valid == pytest.approx(round(top1 * valid), abs=1e-4)
    assert [row["epoch"] for row in payload["history"]] == [0, 1]
    assert all(row["wall_s"] > 0 for row in payload["history"])
    assert set(payload["versions"]) == {"python", "torch", "torchvision", "fastai", "trd"}
    assert payload["device"].startswith("cpu")
    assert [s["path"].rsplit("/", 1)[-1] for s in payload["skipped_images"]] == ["not_really.png", "truncated.jpg"]
    assert payload["ignored_files"] == 1  # README.txt
    # Waiting for data: the run's figures are the epochs' sums, at the resolutions that ran.
    wait = payload["data_wait"]
    assert set(wait["by_px"]) == set(payload["steps_by_px"])
    assert wait["wait_s"] == pytest.approx(sum(row["data_wait_s"] for row in payload["history"]))
    assert wait["train_s"] == pytest.approx(sum(row["train_s"] for row in payload["history"]))
    assert 0 < wait["wait_frac"] < 1 and wait["wait_frac"] == pytest.approx(wait["wait_s"] / wait["train_s"])
    for px, at_px in wait["by_px"].items():
        assert 0 < at_px["wait_s"] < at_px["train_s"] < wait["train_s"]
        assert at_px["wait_s"] == pytest.approx(sum(row["data_wait_s_by_px"][px] for row in payload["history"]))


def _counted_flops(px: int):
    """FLOPs per image of torchvision's ResNet-18 (3 classes), counted in the test with torch's
    FlopCounterMode on a real forward and backward: not trd's counter (a meta-device copy)."""
    from types import SimpleNamespace

    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import resnet18

    model, images = resnet18(num_classes=3).train(), torch.randn(2, 3, px, px)
    with FlopCounterMode(display=False) as forward:
        out = model(images)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    fwd, bwd = forward.get_total_flops() // 2, backward.get_total_flops() // 2
    return SimpleNamespace(forward_flops=fwd, train_flops=fwd + bwd)


def test_compute_saved_recomputed_independently(trained):
    payload, _, _ = trained
    # The steps from the schedule's own plan (the run's records are not used), the FLOPs per
    # image counted here on a freshly built torchvision ResNet-18.
    total_steps = 32 // 8 * 2  # the 32 readable training images, batch 8, 2 epochs
    planned = TRDSchedule(32, until=1.0, prob=0.5, seed=4).plan_px(total_steps, 64).tolist()
    steps = {px: planned.count(px) for px in (64, 32)}
    counted = {px: _counted_flops(px) for px in (64, 32)}
    train_flops = sum(n * 8 * counted[px].train_flops for px, n in steps.items())
    baseline = total_steps * 8 * counted[64].train_flops
    assert payload["steps"] == total_steps and payload["steps_by_px"] == {str(px): n for px, n in steps.items()}
    assert payload["train_flops"] == train_flops
    assert payload["baseline_train_flops"] == baseline
    # BatchNorm recalibration: the default 8 batches, capped at the epoch's 4, of 8 images forward at 64 px.
    recal = 4 * 8 * counted[64].forward_flops
    assert payload["bn_recalibration_flops"] == recal
    assert payload["compute_fraction"] == pytest.approx((train_flops + recal) / baseline, rel=1e-12)
    assert payload["compute_saved_frac"] == pytest.approx(1 - (train_flops + recal) / baseline, rel=1e-12)
    assert payload["train_compute_fraction"] == pytest.approx(train_flops / baseline, rel=1e-12)
    assert payload["train_flops_per_image"]["64"] == counted[64].train_flops
    assert payload["forward_flops_per_image"]["32"] == counted[32].forward_flops


def test_run_directory(trained):
    payload, out, _ = trained
    assert json.loads((out / "run.json").read_text()) == payload
    lines = (out / "history.csv").read_text().strip().splitlines()
    assert lines[0].split(",")[:5] == ["epoch", "train_loss", "valid_loss", "accuracy", "wall_s"]
    rows = list(csv.DictReader(lines))
    assert len(rows) == 2
    assert sum(int(row[f"steps_at_{px}px"]) for row in rows for px in (64, 32)) == payload["steps"]
    # Waiting for data is part of each epoch's training time, at each resolution.
    for row, epoch in zip(rows, payload["history"], strict=True):
        assert 0 <= float(row["data_wait_s"]) <= float(row["train_s"])
        assert float(row["data_wait_s"]) == pytest.approx(sum(float(row[f"data_wait_s_at_{px}px"]) for px in (64, 32)))
        assert float(row["data_wait_frac"]) == pytest.approx(epoch["data_wait_s"] / epoch["train_s"])
    assert (out / "schedule.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(out)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.slow
def test_summary_table_names_what_the_user_needs(odd_folder, tmp_path):
    args = ["train", str(odd_folder), "--size", "64", "--batch-size", "8", "--epochs", "1", "--low-res", "32"]
    args += ["--workers", "0", "--skip-bad-images", "--out", str(tmp_path / "r")]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    for needle in ("top-1 accuracy", "final losses", "training compute", "full-resolution baseline", "compute saved"):
        assert needle in result.stdout
    assert "wall time" in result.stdout and "steps at each resolution" in result.stdout
    assert "skipped images" in result.stdout and "run directory" in result.stdout
    assert "warning: skipped 2 unreadable image(s)" in result.stderr
    # The run reduced steps, so BatchNorm was recalibrated after its last validation: the summary
    # shows both figures (main showed the final one alone, unlike the epoch line above it).
    import json

    run = json.loads((tmp_path / "r" / "run.json").read_text())
    before = f"{100 * run['history'][-1]['accuracy']:.1f}%"
    (line,) = [ln for ln in result.stdout.splitlines() if "before BatchNorm recalibration" in ln]
    assert before in line and "re-estimated" in result.stdout


@pytest.mark.slow
def test_interrupt_then_resume_continues_the_same_schedule(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(
        data=data, arch="resnet18", epochs=3, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run",
        schedule=TRDSchedule(32, until=1.0, prob=0.5, seed=2),
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted) as info:
        train(config, InterruptAfter(step=4))  # 3 steps per epoch: epoch 1 is done and saved
    assert info.value.epochs_done == 1 and info.value.saved
    resumed = train(TrainConfig(**{**config.__dict__, "resume": tmp_path / "run"}))
    planned = config.schedule.plan_px(9, 64).tolist()
    assert ran(resumed) == epoch_counts(planned, 3)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    assert resumed.compute.steps == 9


@pytest.mark.slow
def test_a_checkpoint_from_before_step_groups_resumes_the_same_run(tmp_path):
    # Checkpoints written before this version kept one record per step ("records"); such a run
    # still resumes, its steps counted on load, and finishes with the plan's compute.
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    schedule = TRDSchedule(32, until=1.0, prob=0.5, seed=2)
    config = TrainConfig(
        data=data, arch="resnet18", epochs=3, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run",
        schedule=schedule,
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=4))  # epoch 1 (3 steps) saved
    progress_path = tmp_path / "run" / "checkpoint.json"
    saved = json.loads(progress_path.read_text())
    planned = schedule.plan_px(9, 64).tolist()
    counted = {px: _counted_flops(px) for px in (64, 32)}
    del saved["step_groups"]  # the old format, written out by hand from the plan
    saved["records"] = [
        {"fit": 0, "epoch": 0, "step": t, "total_steps": 9, "px": planned[t], "full_px": 64, "images": 8,
         "train_flops": 8 * counted[planned[t]].train_flops}
        for t in range(3)
    ]  # fmt: skip
    progress_path.write_text(json.dumps(saved))
    resumed = train(TrainConfig(**{**config.__dict__, "resume": tmp_path / "run"}))
    assert ran(resumed) == epoch_counts(planned, 3)
    assert resumed.compute.steps_by_px == {px: planned.count(px) for px in (64, 32)}
    assert resumed.compute.train_flops == sum(8 * counted[px].train_flops for px in planned)
    # A corrupt checkpoint is one line, and nothing in the run directory changes.
    progress_path.write_text("{not json")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir())
    with pytest.raises(RunDirError, match="unreadable checkpoint"):
        train(TrainConfig(**{**config.__dict__, "resume": tmp_path / "run"}))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir()) == before


@pytest.mark.slow
def test_resume_refuses_a_different_run(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(data=data, epochs=2, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=3))
    other = TrainConfig(**{**config.__dict__, "epochs": 2, "batch_size": 4, "resume": tmp_path / "run"})
    with pytest.raises(RunDirError, match="the run used batch_size=8, this command has 4"):
        train(other)
    with pytest.raises(RunDirError, match="no checkpoint there"):
        train(TrainConfig(**{**config.__dict__, "resume": tmp_path}))


def test_full_disk_keeps_the_results(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "model.pth" in str(f):
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    result = train(TrainConfig(data=data, epochs=1, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run"))
    assert result.write_error and "No space left on device" in result.write_error
    # The numbers survive, for the CLI to print, and are the last epoch's.
    assert result.metrics["top1"] == result.history[-1]["accuracy"]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data/imagenette2-224 (real ImageNet subset)")
def test_one_epoch_on_an_imagenette_subset(tmp_path):
    """Real JPEGs (some greyscale) from ImageNet: 60 train / 20 val images per class, 1 epoch at 64 px."""
    subset = tmp_path / "imagenette"
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("val", 20)):
        for cls in sorted(p.name for p in (SHARED_DATA / split).iterdir()):
            files = sorted((SHARED_DATA / split / cls).iterdir())
            (subset / split / cls).mkdir(parents=True)
            for i in rng.choice(len(files), n, replace=False):
                shutil.copy(files[i], subset / split / cls / files[i].name)
    args = ["train", str(subset), "--arch", "resnet18", "--size", "64", "--low-res", "32", "--epochs", "1"]
    args += ["--batch-size", "32", "--out", str(tmp_path / "run"), "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["num_classes"] == 10 and payload["train_images"] == 600
    assert set(payload["metrics"]) == {"top1", "top5", "train_loss", "valid_loss"}
    assert payload["metrics"]["top5"] >= payload["metrics"]["top1"]
    # 600 / 32 = 18 steps under the default recipe: each at 32 px with probability 0.9, seed 0.
    planned = TRDSchedule(32, until=1.0, prob=0.9, seed=0).plan_px(18, 64).tolist()
    assert payload["steps_by_px"] == {"64": planned.count(64), "32": planned.count(32)}


class BreakImageAfterFirstEpoch(TrainObserver):
    def __init__(self, victim):
        self.victim = victim

    def epoch_done(self, row):
        if row["epoch"] == 0:
            self.victim.write_bytes(b"overwritten after the check")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_image_broken_mid_run_is_one_clear_error_and_the_saved_epochs_are_named(tmp_path, workers):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    victim = sorted((data / "train" / "circle").iterdir())[0]
    config = TrainConfig(data=data, epochs=3, size_px=64, batch_size=8, workers=workers, out_dir=tmp_path / "run")
    with pytest.raises(DataError) as info:
        train(config, BreakImageAfterFirstEpoch(victim))
    message = str(info.value)
    assert "\n" not in message  # a worker's traceback is unwrapped to its last line
    assert message.startswith(f"cannot read image {victim}")
    assert f"epochs 1-1 are saved: fix it and add `resume` {tmp_path / 'run'}" in message


@pytest.mark.slow
def test_an_existing_run_is_never_overwritten(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(data=data, epochs=1, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run")
    train(config)
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run; choose another `out`, or continue it with `resume`"):
        train(config)
    assert (tmp_path / "run" / "run.json").read_bytes() == before


@pytest.mark.slow
def test_a_loader_bound_run_is_told_so(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(data=data, epochs=1, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run")
    # Every run waits for some data, and never for more than all of its training time.
    never = train(TrainConfig(**{**config.__dict__, "max_data_wait_frac": 1.0}))
    assert 0 < never.data_wait.wait_frac < 1 and not any("loader-bound" in w for w in never.warnings)
    told = train(TrainConfig(**{**config.__dict__, "out_dir": tmp_path / "run2", "max_data_wait_frac": 0.0}))
    (warning,) = [w for w in told.warnings if "loader-bound" in w]
    assert f"waited for data {100 * told.data_wait.wait_frac:.0f}% of its training time" in warning
    assert "64 px steps" in warning and "`workers` (it had 0)" in warning
