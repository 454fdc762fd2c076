"""The trd command line: options reach the core as given, errors are one line with the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_image_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.cost import ComputeSummary, ImageFlops, StepGroup
from trdcli.core.errors import TrainingInterrupted
from trdcli.core.recipes import Recipe
from trdcli.core.schedules import ComposerSchedule, ConstantSchedule, FFCVSchedule, TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.results import RunResult

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("cli") / "data", n_train=4, n_valid=2)


def fake_result(config: TrainConfig) -> RunResult:
    flops = {64: ImageFlops(64, 10, 30), 32: ImageFlops(32, 3, 10)}
    summary = ComputeSummary(
        full_px=64,
        steps_by_px={64: 1, 32: 9},
        images_by_px={64: 8, 32: 72},
        flops_by_px=flops,
        train_flops=8 * 30 + 72 * 10,
        baseline_train_flops=80 * 30,
        valid_flops=100,
    )
    return RunResult(
        config=config,
        classes=["a", "b", "c"],
        compute=summary,
        metrics={"top1": 0.5, "train_loss": 1.0, "valid_loss": 1.1},
        history=[{"epoch": 0, "train_loss": 1.0, "valid_loss": 1.1, "accuracy": 0.5, "wall_s": 2.0}],
        step_groups=[StepGroup(0, 0, 64, 32, 9, 72), StepGroup(0, 0, 64, 64, 1, 8)],
        profile_px=[32] * 9 + [64],
        wall_time_s=2.0,
        run_dir=Path("runs/x"),
        device="cpu",
        versions={"trd": "0"},
        train_images=80,
        valid_images=10,
        lr=3e-3,
    )


@pytest.fixture
def captured(monkeypatch):
    """Replace the training with a recorder of the config it receives."""
    seen = []

    def fake_train(config, observer=None):
        seen.append(config)
        return fake_result(config)

    monkeypatch.setattr("trdcli.run.train.train", fake_train)
    return seen


def test_help_lists_the_commands():
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert {"train", "demo", "estimate-cost", "presets"} <= listed


def test_version():
    from importlib.metadata import version

    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"trd {version('trdcli')}\n"


def test_help_is_fast_because_torch_is_not_imported():
    code = "import sys; from trdcli.cli import app as cli; print('torch' in sys.modules, 'fastai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ConstantSchedule()),
        (["--low-res", "112"], TRDSchedule(112, until=1.0, prob=0.9, seed=0)),  # the default recipe
        (
            ["--low-res", "96", "--until", "0.5", "--prob", "0.7", "--seed", "3"],
            TRDSchedule(96, until=0.5, prob=0.7, seed=3),
        ),
        # The presets as their documented parameters say (docs/presets.md), not as get_preset builds them.
        (["--preset", "trd-spread"], TRDSchedule(low_scale=0.5, until=1.0, prob=0.9, name="trd-spread")),
        (["--preset", "trd-window", "--low-res", "96"], TRDSchedule(96, until=0.9, prob=1.0, name="trd-window")),
        (
            ["--preset", "trd-alternate", "--prob", "0.3", "--seed", "5"],
            TRDSchedule(low_scale=0.5, until=0.9, prob=0.3, seed=5, name="trd-alternate"),
        ),
        (["--preset", "composer"], ComposerSchedule(0.5, 0.5, 0.2, 4)),
        (["--preset", "composer", "--initial-scale", "0.3"], ComposerSchedule(0.3, 0.5, 0.2, 4)),
        (["--preset", "ffcv", "--low-res", "160"], FFCVSchedule(160, 65 / 88, 76 / 88, 32)),
        (["--low-res", "112", "--prob", "1", "--prob-end", "0.2"], TRDSchedule(112, until=1.0, prob=1.0, prob_end=0.2)),
    ],
)
def test_train_builds_the_schedule_the_flags_ask_for(folder, captured, args, expected):
    result = runner.invoke(cli.app, ["train", str(folder), *args])
    assert result.exit_code == 0, result.output
    (config,) = captured
    assert config.schedule == expected
    assert config.data == folder


def test_train_passes_every_option(folder, captured, tmp_path):
    args = ["train", str(folder), "--arch", "resnet34", "--epochs", "3", "--size", "128", "--batch-size", "16"]
    args += ["--lr", "0.01", "--valid-pct", "0.3", "--workers", "0", "--out", str(tmp_path / "r"), "--skip-bad-images"]
    args += ["--device", "cpu", "--resize-mode", "area", "--bn-recalibrate", "4", "--seed", "9", "--no-check-images"]
    args += ["--low-res", "64", "--until", "0.8", "--prob", "0.5", "--weights", str(tmp_path / "w.pth")]
    args += ["--resume", str(tmp_path / "old"), "--bn-mode", "private", "--min-scale", "0.5", "--tail-lr", "0.6"]
    args += ["--bn-recal-view", "test"]
    args += ["--no-scheduled-loading", "--direct-crops", "--max-data-wait", "0.25", "--log-to", "tensorboard"]
    args += ["--prepared", str(tmp_path / "copy"), "--no-prepared"]
    args += ["--recipe", "paper", "--opt", "sgd", "--momentum", "0.8", "--wd", "5e-5", "--wd-norm-bias"]
    args += ["--lr-schedule", "step", "--warmup-epochs", "1", "--milestones", "2", "--lr-gamma", "0.5"]
    args += ["--label-smoothing", "0.1", "--mixup", "0.2", "--cutmix", "1.0"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    # The whole config: an option that is never forwarded leaves its default here and fails.
    assert captured == [
        TrainConfig(
            data=folder,
            arch="resnet34",
            epochs=3,
            size_px=128,
            batch_size=16,
            lr=0.01,
            lr_find=False,
            schedule=TRDSchedule(64, until=0.8, prob=0.5, seed=9),
            seed=9,
            valid_pct=0.3,
            workers=0,
            weights=tmp_path / "w.pth",
            out_dir=tmp_path / "r",
            resume=tmp_path / "old",
            skip_bad_images=True,
            check_images=False,
            device="cpu",
            resize_mode="area",
            bn_recalibrate=4,
            bn_recal_view="test",
            bn_mode="private",
            tail_lr_frac=0.6,
            min_scale=0.5,
            scheduled_loading=False,
            direct_crops=True,
            max_data_wait_frac=0.25,
            log_to=("tensorboard",),
            prepared=tmp_path / "copy",
            use_prepared=False,
            recipe=Recipe(
                name="paper",
                opt="sgd",
                momentum=0.8,
                wd=5e-5,
                wd_norm_bias=True,
                lr_schedule="step",
                warmup_epochs=1,
                milestones=(2,),
                gamma=0.5,
                label_smoothing=0.1,
                mixup=0.2,
                cutmix=1.0,
            ),
        )  # fmt: skip
    ]
    # The summary names the key figures: 1 - (8 * 30 + 72 * 10) / (80 * 30) = 60% saved.
    assert "compute saved" in result.stdout and "60.0%" in result.stdout


def test_train_defaults_are_the_documented_ones(folder, captured):
    # docs/cli.md's table, written out here: not TrainConfig's defaults, which the CLI itself reads.
    assert runner.invoke(cli.app, ["train", str(folder)]).exit_code == 0
    (config,) = captured
    documented = {
        "arch": "resnet18", "epochs": 5, "size_px": 224, "batch_size": 64, "lr": None, "lr_find": False,
        "schedule": ConstantSchedule(), "seed": 0, "valid_pct": None, "workers": None, "weights": None,
        "out_dir": None, "resume": None, "skip_bad_images": False, "check_images": True, "device": None,
        "resize_mode": "bilinear", "bn_recalibrate": None, "bn_recal_view": "train", "bn_mode": "shared",
        "tail_lr_frac": None,
        "min_scale": 0.35, "scheduled_loading": True, "direct_crops": False, "max_data_wait_frac": 0.1,
        "log_to": (), "prepared": None, "use_prepared": True, "recipe": Recipe(),
    }  # fmt: skip
    assert {name: getattr(config, name) for name in documented} == documented
    assert config.peak_lr == 3e-3  # `--lr` 3e-3 by default


def test_lr_find(folder, captured):
    assert runner.invoke(cli.app, ["train", str(folder), "--lr", "find"]).exit_code == 0
    assert captured == [TrainConfig(data=folder, lr_find=True)]


def test_json_output_is_only_json(folder, captured):
    result = runner.invoke(cli.app, ["train", str(folder), "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["compute_saved_frac"] == pytest.approx(0.6)
    assert payload["steps_by_px"] == {"64": 1, "32": 9}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--batch-size", "-4"], "--batch-size must be a positive integer, got -4"),
        (["--low-res", "300"], "--low-res=300 must be below the full training resolution of 224 px"),
        (["--low-res", "64", "--size", "64"], "--low-res=64 must be below the full training resolution of 64 px"),
        (["--low-res", "16"], "--low-res=16 px is too small"),
        (["--low-res", "112", "--until", "1.5"], r"--until must be in \(0, 1\], got 1.5"),
        (["--low-res", "112", "--until", "0"], r"--until must be in \(0, 1\], got 0.0"),
        (["--low-res", "112", "--prob", "-0.5"], r"--prob must be in \[0, 1\], got -0.5"),
        (["--until", "0.5"], "--until need --low-res \\(or a --preset\\)"),
        (
            ["--preset", "composer", "--until", "0.5"],
            "--until cannot override preset composer \\(options it takes: --initial-scale\\)",
        ),
        (["--arch", "resnet51"], "unknown --arch 'resnet51'; did you mean resnet50"),
        (["--arch", "vit_b_16"], "needs a fixed input size"),
        (["--workers", "-1"], "--workers must be 0 or more, got -1"),
        (["--max-data-wait", "1.5"], r"--max-data-wait must be a fraction in \[0, 1\], got 1.5"),
    ],
)
def test_bad_values_give_one_line_and_exit_1(folder, args, message):
    result = runner.invoke(cli.app, ["train", str(folder), *args])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    import re

    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda root: None,
        lambda root: root.mkdir(),
        lambda root: (root / "only").mkdir(parents=True) or (root / "only" / "a.png").write_bytes(b"x"),
    ],
    ids=["missing", "empty", "single-class"],
)
def test_bad_folders_exit_1(tmp_path, make):
    root = tmp_path / "data"
    make(root)
    result = runner.invoke(cli.app, ["train", str(root)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(root) in result.stderr or "only" in result.stderr


@pytest.mark.parametrize("args", [["--lr", "fast"], ["--preset", "nope"], ["--epochs", "two"], ["--no-such-flag"]])
def test_usage_errors_exit_2(folder, args):
    result = runner.invoke(cli.app, ["train", str(folder), *args])
    assert result.exit_code == 2


@pytest.mark.slow  # trains for real: over 10 s here
def test_interrupted_run_exits_130_and_says_how_to_resume(folder, monkeypatch, tmp_path):
    def interrupted(config, observer=None):
        raise TrainingInterrupted(tmp_path / "run", epochs_done=2, saved=True)

    monkeypatch.setattr("trdcli.run.train.train", interrupted)
    result = runner.invoke(cli.app, ["train", str(folder)])
    assert result.exit_code == 130
    assert f"--resume {tmp_path / 'run'}" in result.stderr
    assert "epochs 1-2 are saved" in result.stderr


def test_out_of_memory_is_one_line_with_advice(folder, monkeypatch):
    def oom(config, observer=None):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)\nmore")

    monkeypatch.setattr("trdcli.run.train.train", oom)
    result = runner.invoke(cli.app, ["train", str(folder), "--batch-size", "4096"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)); "
        "lower --batch-size or --size"
    ]


@pytest.mark.parametrize("error", [RuntimeError, ValueError, KeyError, FileNotFoundError])
def test_bugs_are_not_disguised_as_user_errors(folder, monkeypatch, error):
    def bug(config, observer=None):
        raise error("a bug in trd")

    monkeypatch.setattr("trdcli.run.train.train", bug)
    result = runner.invoke(cli.app, ["train", str(folder)])
    assert type(result.exception) is error  # it reaches the top with its traceback
    assert "error: " not in result.stderr


def test_unwritable_run_directory_still_prints_the_summary(folder, monkeypatch):
    def unwritable(config, observer=None):
        result = fake_result(config)
        result.write_error = "could not write the run directory runs/x: No space left on device"
        return result

    monkeypatch.setattr("trdcli.run.train.train", unwritable)
    result = runner.invoke(cli.app, ["train", str(folder)])
    assert result.exit_code == 1
    assert "compute saved" in result.stdout
    assert "No space left on device" in result.stderr


@pytest.mark.slow
def test_real_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
    """A real `trd train` process, a real SIGINT after the first epoch, then --resume."""
    import signal

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=64)
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "trdcli", "train", str(data), "--arch", "resnet18", "--size", "32", "--epochs", "8"]
    args += ["--batch-size", "8", "--workers", "0", "--out", str(run_dir), "--low-res", "32", "--seed", "1"]
    # --low-res 32 at --size 32 must fail: check that first, quickly.
    bad = subprocess.run(args, capture_output=True, text=True)
    assert bad.returncode == 1 and "must be below" in bad.stderr
    # 128 px makes each epoch last long enough (a few seconds) for the signal to land mid-run.
    args[args.index("--size") + 1] = "128"
    # A shell running the tests in the background starts them with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: give the child the terminal's default back.
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"--resume {run_dir}" in err
    done = json.loads((run_dir / "checkpoint.json").read_text())["epochs_done"]
    assert 1 <= done < 8

    resumed = subprocess.run(args + ["--resume", str(run_dir), "--json"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    payload = json.loads(resumed.stdout)
    assert payload["steps"] == 8 * 3  # 24 images / batch 8 = 3 steps per epoch, all of them recorded
    assert len(payload["history"]) == 8
    assert payload["compute_saved_frac"] > 0


def test_eval_names_batchnorm_recalibration_as_train_does():
    from typer.testing import CliRunner

    shown = CliRunner().invoke(cli.app, ["eval", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--bn-recalibrate" in shown  # trd train's name; the old --recalibrate-bn still parses
    old = CliRunner().invoke(cli.app, ["eval", "/nonexistent-run", "--recalibrate-bn", "2"])
    assert old.exit_code == 1 and "No such option" not in old.output


@pytest.mark.slow
def test_a_table_written_to_a_file_keeps_its_rows_whole(monkeypatch):
    # `trd compare ... > log` under nohup: no terminal sets the width, and rich's 80 columns cut a
    # table's cells into fragments. Here the preset's row must stay on one line, as wide as it needs.
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(cli.app, ["presets", "--arch", "resnet18"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "trd-window" in line)
    assert "half resolution for the first 90% of steps, then full" in row and "arXiv:2112.00954" in row
    # COLUMNS is the user's word for the width, and is kept.
    monkeypatch.setenv("COLUMNS", "100")
    narrow = runner.invoke(cli.app, ["presets", "--arch", "resnet18"])
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100


class _Captured(Exception):
    """Raised by a stand-in for the function a command configures, once it has the arguments."""


def test_eval_passes_every_option(tmp_path, monkeypatch):
    import trdcli.evaluate.evaluation as evaluation

    seen = []

    def capture(config, observer=None):
        seen.append(config)
        raise _Captured

    monkeypatch.setattr(evaluation, "evaluate", capture)
    args = ["eval", str(tmp_path / "data"), "--arch", "resnet34", "--weights", str(tmp_path / "w.pth")]
    args += ["--size", "96", "--sizes", "64,96,128", "--bn-recalibrate", "3", "--no-probes", "--cue-conflict"]
    args += [str(tmp_path / "cc"), "--batch-size", "16", "--workers", "0", "--device", "cpu", "--seed", "7"]
    result = runner.invoke(cli.app, args)
    assert isinstance(result.exception, _Captured), result.output
    (config,) = seen
    expected = {
        "run_dir": None, "data": tmp_path / "data", "arch": "resnet34", "weights": tmp_path / "w.pth",
        "size_px": 96, "sizes_px": (64, 96, 128), "bn_recalibrate": 3, "probes": False,
        "cue_conflict": tmp_path / "cc", "batch_size": 16, "workers": 0, "device": "cpu", "seed": 7,
    }  # fmt: skip
    assert {name: getattr(config, name) for name in expected} == {
        **expected,
        "sizes_px": type(config.sizes_px)(expected["sizes_px"]),
    }
    # A run directory with its own data folder: the second argument.
    runner.invoke(cli.app, ["eval", str(tmp_path / "run"), str(tmp_path / "other"), "--recalibrate-bn", "2"])
    assert (seen[-1].run_dir, seen[-1].data, seen[-1].bn_recalibrate) == (tmp_path / "run", tmp_path / "other", 2)


def test_demo_passes_every_option(tmp_path, monkeypatch):
    import trdcli.cli.demo as demo

    seen = []

    def capture(out, **kwargs):
        seen.append((out, kwargs))
        raise _Captured

    monkeypatch.setattr(demo, "run_demo", capture)
    args = ["demo", "--out", str(tmp_path / "d"), "--epochs", "3", "--low-res", "40", "--until", "0.7"]
    result = runner.invoke(cli.app, [*args, "--prob", "0.6", "--seed", "5"])
    assert isinstance(result.exception, _Captured), result.output
    ((out, kwargs),) = seen
    assert out == tmp_path / "d"
    assert {k: v for k, v in kwargs.items() if k != "observer"} == {
        "epochs": 3, "seed": 5, "low_res": 40, "until": 0.7, "prob": 0.6,
    }  # fmt: skip


def test_presets_passes_every_option(monkeypatch):
    import trdcli.plan.estimate as estimate

    seen = []

    def capture(*args):
        seen.append(args)
        raise _Captured

    monkeypatch.setattr(estimate, "preset_table", capture)
    args = ["presets", "--arch", "resnet18", "--size", "160", "--epochs", "30", "--batch-size", "128"]
    result = runner.invoke(cli.app, [*args, "--images", "5000", "--json"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen == [("resnet18", 160, 30, 128, 5000)]


@pytest.mark.slow
def test_demo_prints_the_shape_bias_interval_and_the_accuracy_before_recalibration(tmp_path, monkeypatch):
    import trdcli.cli.demo as demo

    real = demo.run_demo
    made = []

    def small(out, **kwargs):  # the real demo, at 8/4/3 images per shape and one epoch
        made.append(real(out, **{**kwargs, "epochs": 1}, images_per_class=(8, 4, 3)))
        return made[-1]

    monkeypatch.setattr(demo, "run_demo", small)
    result = runner.invoke(cli.app, ["demo", "--out", str(tmp_path / "d"), "--epochs", "1"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    (comparison,) = made
    trd_row = next(line for line in result.stdout.splitlines() if "before BatchNorm recalibration" in line)
    # The TRD run recalibrated after its one epoch: the row shows that epoch's validation.
    assert f"{100 * comparison.trd.history[-1]['accuracy']:.1f}%" in trd_row
    interval_row = next(line for line in result.stdout.splitlines() if "95% interval (Wilson)" in line)
    for bias in (comparison.baseline_shape_bias, comparison.trd_shape_bias):
        low, high = bias.shape_bias_ci95  # checked against Newcombe's table in test_eval.py
        assert f"{100 * low:.0f}-{100 * high:.0f}%" in interval_row
    # The closing lines read this run's own figures: TRD before and after recalibration.
    text = " ".join(result.stdout.split())
    before, after = comparison.trd.history[-1]["accuracy"], comparison.trd.metrics["top1"]
    assert f"TRD's top-1 was {100 * before:.1f}% before BatchNorm recalibration and {100 * after:.1f}% after" in text
    steps = comparison.trd.compute.steps_by_px  # {96: full steps, 48: reduced ones}
    assert f"{100 * steps.get(48, 0) / sum(steps.values()):.1f}% of its steps trained at 48 px" in text


def test_an_unknown_device_names_trds_choices_not_torchs(folder):
    # main printed torch's list of every device type it knows (cpu, cuda, ipu, xpu, mkldnn, ...).
    result = runner.invoke(cli.app, ["train", str(folder), "--device", "cpuu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == "error: --device 'cpuu' is not a device trd trains on: give cpu, cuda, cuda:N or mps\n"
    assert runner.invoke(cli.app, ["train", str(folder), "--device", "xpu"]).stderr.startswith("error: --device 'xpu'")


@pytest.mark.parametrize(
    ("command", "usage"),
    [("train", "trd train [OPTIONS] {DATA}"), ("compare", "trd compare [OPTIONS] {DATA}"),
     ("prepare", "trd prepare [OPTIONS] {DATA}"), ("estimate-cost", "trd estimate-cost [OPTIONS] [DATA]"),
     ("eval", "trd eval [OPTIONS] {RUN_DIR} [DATA]")],
)  # fmt: skip
def test_the_usage_line_names_the_arguments_as_typer_users_expect(command, usage):
    # Typer marks a required argument {NAME} and an optional one [NAME]; main's read {data}, {target}.
    result = runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and usage in " ".join(result.stdout.split())
    assert "{data}" not in result.stdout and "{target}" not in result.stdout


@pytest.mark.slow
def test_progress_lines_stay_whole_when_stderr_is_a_file(tmp_path):
    import subprocess
    import sys

    from helpers import make_image_folder

    # `trd train ... 2> log`: main wrapped each epoch line at 80 columns ("steps:" then "15 at 96 px").
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    args = [sys.executable, "-m", "trdcli", "train", str(data), "--size", "64", "--low-res", "32", "--epochs", "1",
            "--batch-size", "8", "--workers", "0", "--out", str(tmp_path / "run")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    with open(tmp_path / "log", "w") as log:
        done = subprocess.run(args, stderr=log, stdout=subprocess.DEVNULL, env=env, timeout=300)
    assert done.returncode == 0
    (line,) = [ln for ln in (tmp_path / "log").read_text().splitlines() if "epoch 1/1" in ln]
    assert len(line) > 80 and "steps: " in line and line.rstrip().endswith(" s")


def test_an_option_group_is_its_options_in_place_and_one_dict_in_the_command():
    import typer

    from trdcli.cli.options import RECIPE_OPTIONS, SCHEDULE_OPTIONS, with_option_groups

    app, seen = typer.Typer(), {}

    @app.command()
    @with_option_groups
    def probe(first: int = 1, recipe_options: dict = RECIPE_OPTIONS, last: str = "z"):
        seen.update(first=first, recipe=recipe_options, last=last)

    result = runner.invoke(app, ["--opt", "sgd", "--mixup", "0.2", "--last", "y"])
    assert result.exit_code == 0, result.output
    names = [name for name, _, _ in RECIPE_OPTIONS.options]
    assert seen["recipe"] == {**dict.fromkeys(names), "opt": "sgd", "mixup": 0.2} and seen["last"] == "y"
    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    # In the group's place: after --first, before --last.
    where = [help_text.index(flag) for flag in ("--first", "--recipe", "--cutmix", "--last")]
    assert where == sorted(where)
    assert [name for name, _, _ in SCHEDULE_OPTIONS.options][:3] == ["low_res", "until", "prob"]
