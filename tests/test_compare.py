"""`trd compare`: equal-compute baselines by hand arithmetic, the table against the runs' run.json, resume."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from helpers import make_image_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.cli.values import parse_seeds, parse_setting
from trdcli.core.errors import ConfigError
from trdcli.plan.compare import (
    CompareConfig,
    Setting,
    equal_compute_epochs,
    planned_fraction,
    run_compare,
    summary_rows,
    with_equal_compute_baselines,
)
from trdcli.run.config import TrainConfig
from trdcli.run.flops_cache import arch_flops
from trdcli.run.observer import TrainObserver

runner = CliRunner()
SPREAD = "spread:low_res=32,until=1.0,prob=0.5"


@pytest.mark.parametrize(
    ("fraction", "epochs", "expected"),
    [(0.375, 8, 3), (0.6, 8, 5), (0.5625, 8, 5), (0.5, 5, 3), (0.05, 8, 1), (1.0, 4, 4)],
)
def test_equal_compute_epochs(fraction, epochs, expected):
    # 0.375 x 8 = 3; 0.6 x 8 = 4.8 -> 5; 0.5625 x 8 = 4.5 -> 5 (ties go to the baseline); 0.05 x 8 = 0.4 -> at least 1.
    assert equal_compute_epochs(fraction, epochs) == expected


def test_equal_compute_baseline_of_a_window_by_hand(tmp_path):
    recipe = TrainConfig(data=tmp_path, arch="resnet18", epochs=10, size_px=64, batch_size=8)
    config = CompareConfig(recipe, (Setting("baseline"), Setting("w", low_res=32, until=0.5)), seeds=(0,))
    settings = with_equal_compute_baselines(config, train_images=80, num_classes=3)
    flops = arch_flops("resnet18", 3)
    # 10 steps per epoch of 8 images, 100 steps: the first 50 at 32 px, the rest at 64 px; then
    # BatchNorm recalibrated (the default after reduced steps) on 8 batches of 8 images, forward only.
    recal = 8 * 8 * flops.at(64).forward_flops
    baseline = 100 * 8 * flops.at(64).train_flops
    fraction = (50 * 8 * flops.at(32).train_flops + 50 * 8 * flops.at(64).train_flops + recal) / baseline
    expected_epochs = int(fraction * 10 + 0.5)
    assert 6 <= expected_epochs <= 7  # (1 + ~0.25) / 2 of 10 epochs, plus ~3% for recalibration
    assert settings[2] == Setting(f"baseline-{expected_epochs}ep", epochs=expected_epochs, matches="w")
    assert planned_fraction(config.settings[1], recipe, 80, 3, seed=0) == pytest.approx(fraction)
    no_recal = Setting("w", low_res=32, until=0.5, bn_recalibrate=0)
    assert planned_fraction(no_recal, recipe, 80, 3, seed=0) == pytest.approx(fraction - recal / baseline)


def test_settings_from_the_command_line():
    assert parse_setting("trd-window") == Setting("trd-window", preset="trd-window")
    assert parse_setting("baseline") == Setting("baseline")
    assert parse_setting(
        "s:low_res=48,until=1.0,prob=0.9,bn_recalibrate=8,bn_mode=private,bn_recal_view=test"
    ) == Setting("s", low_res=48, until=1.0, prob=0.9, bn_recalibrate=8, bn_mode="private", bn_recal_view="test")
    assert parse_setting("t:low_res=48,until=0.9,tail_lr=0.3") == Setting("t", low_res=48, until=0.9, tail_lr=0.3)
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("4,7") == (4, 7) and parse_seeds("7,") == (7,)
    with pytest.raises(ConfigError, match=r"a count of at least 1 \(for seed 0 alone: 0,\), got '0'"):
        parse_seeds("0")
    for bad, message in [
        ("x:low_res=48,tail_lr=0.3", "`tail_lr` needs a full-resolution tail"),  # the default reading has none
        ("nope", "neither a preset"),
        ("x:low_res=48,speed=2", "unknown key 'speed'"),
        ("x:low_res=big", "low_res must be a number"),
        ("x:until=0.5", "need `low_res`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_setting(bad)
    recipe = TrainConfig(data=Path("."), size_px=64)
    with pytest.raises(ConfigError, match="`setting` x: `low_res`=64 must be below the full training resolution"):
        CompareConfig(recipe, (Setting("x", low_res=64),))
    with pytest.raises(ConfigError, match=r"`seeds` must be distinct, got \[0, 0\]"):
        CompareConfig(recipe, (Setting("baseline"),), seeds=(0, 0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("compare") / "data", n_train=8, n_valid=2, px=48)


def compare_args(folder, out):
    args = ["compare", str(folder), "--size", "64", "--batch-size", "8", "--epochs", "2", "--seeds", "0,1"]
    return args + ["--workers", "0", "--setting", "baseline", "--setting", SPREAD, "--out", str(out)]


@pytest.mark.slow  # trains for real: over 10 s here
def test_the_table_is_what_the_runs_recorded_and_a_rerun_trains_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cli.stdout, "width", 200)  # a wide terminal: one table row per setting
    out = tmp_path / "cmp"
    result = runner.invoke(cli.app, [*compare_args(folder, out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [row["setting"] for row in payload["settings"]] == ["baseline", "spread", "baseline-1ep"]
    for row in payload["settings"]:
        runs = [json.loads((out / row["setting"] / f"seed{s}" / "run.json").read_text()) for s in (0, 1)]
        top1 = [r["metrics"]["top1"] for r in runs]
        assert row["top1_mean"] == statistics.mean(top1) and row["top1_std"] == statistics.stdev(top1)
        assert row["wall_time_s_mean"] == statistics.mean(r["wall_time_s"] for r in runs)
        # Compute against the recipe's 2-epoch baseline: 24 images / batch 8 = 3 steps an epoch.
        reference = 2 * 3 * 8 * runs[0]["train_flops_per_image"]["64"]
        assert payload["reference_train_flops"] == reference
        assert row["recipe_train_compute_fraction"] == statistics.mean(r["train_flops"] / reference for r in runs)
        # The spread recalibrates on its 3 batches (of the default 8) of 8 images, forward only, at 64 px.
        recal_flops = 3 * 8 * runs[0]["forward_flops_per_image"]["64"] if row["setting"] == "spread" else 0
        assert [r["bn_recalibration_flops"] for r in runs] == [recal_flops] * 2
        assert row["recipe_compute_fraction"] == pytest.approx(
            statistics.mean((r["train_flops"] + recal_flops) / reference for r in runs)
        )
        # The same key means what it means in run.json: a share of the run's own baseline.
        assert row["compute_fraction"] == pytest.approx(statistics.mean(r["compute_fraction"] for r in runs))
        assert [r["seed"] for r in runs] == [0, 1] and {r["epochs"] for r in runs} == {row["epochs"]}
    assert payload["settings"][2]["recipe_compute_fraction"] == 0.5  # 1 of 2 epochs at full resolution
    assert payload["settings"][2]["compute_fraction"] == 1.0  # every step at full resolution
    assert set(payload["baselines"]) >= {"compute_fraction", "recipe_compute_fraction"}
    assert (out / "compare.json").is_file() and (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("run.json")}
    table = runner.invoke(cli.app, compare_args(folder, out))
    assert table.exit_code == 0, table.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("run.json")} == stamps  # nothing retrained
    baseline = payload["settings"][0]
    assert f"{100 * baseline['top1_mean']:.1f}% ± {100 * baseline['top1_std']:.1f}%" in table.stdout
    assert "compute: training steps and BatchNorm recalibration" in table.stdout


class InterruptOnce(TrainObserver):
    """Ctrl-C in the second epoch of one run (the first is checkpointed)."""

    def __init__(self, label: str):
        self.label, self.current, self.fired = label, "", False

    def run_label(self, label: str) -> None:
        self.current = label

    def step_done(self, step, epoch, px, loss, images_per_s) -> None:
        if self.current == self.label and epoch == 1 and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


@pytest.mark.slow  # trains for real: over 10 s here
def test_an_interrupted_compare_resumes_where_it_stopped(folder, tmp_path):
    from trdcli.core.errors import TrainingInterrupted

    recipe = TrainConfig(data=folder, epochs=2, size_px=64, batch_size=8, workers=0)
    settings = (Setting("baseline"), Setting("spread", low_res=32, until=1.0, prob=0.5))
    config = CompareConfig(recipe, settings, seeds=(0, 1), out_dir=tmp_path / "cmp", equal_compute=False)
    with pytest.raises(TrainingInterrupted):
        run_compare(config, InterruptOnce("spread seed 0"))
    interrupted = tmp_path / "cmp" / "spread" / "seed0"
    assert (interrupted / "checkpoint.json").is_file() and not (interrupted / "run.json").exists()
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "cmp").rglob("run.json")}
    assert len(done) == 2  # both baseline seeds finished before
    compared = run_compare(config)
    assert {p: p.stat().st_mtime_ns for p in done} == done
    resumed = json.loads((interrupted / "run.json").read_text())
    assert [row["epoch"] for row in resumed["history"]] == [0, 1] and resumed["steps"] == 6
    assert [row["seeds"] for row in summary_rows(compared)] == [[0, 1], [0, 1]]


@pytest.mark.slow
def test_a_one_epoch_comparison_says_why_it_has_no_equal_compute_baseline(tmp_path):
    # main printed "1 epochs" and, with no equal-compute baseline, no line saying why.
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    args = ["compare", str(data), "--size", "64", "--batch-size", "8", "--epochs", "1", "--seeds", "0,",
            "--workers", "0", "--setting", "baseline", "--setting", SPREAD, "--out", str(tmp_path / "cmp")]  # fmt: skip
    result = runner.invoke(cli.app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert f"on {data}, 1 epoch, recipe fastai: adamw" in said and "1 epochs" not in said
    assert "no equal-compute baseline: at 1 epoch the baseline cannot train fewer whole epochs" in said
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir() if p.is_dir()) == ["baseline", "spread"]
