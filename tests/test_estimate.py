"""`trd estimate-cost`: the paper's arithmetic, budgets fed back in, plan == record, bad values."""

from __future__ import annotations

import json
import re

import pytest
from helpers import epoch_counts, make_image_folder, ran
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.cli.values import parse_budget, parse_throughput
from trdcli.core.schedules import TRDSchedule
from trdcli.plan.estimate import PlanOptions, plan
from trdcli.run.config import TrainConfig
from trdcli.run.flops_cache import arch_flops, default_cache
from trdcli.run.throughput import Throughput
from trdcli.run.train import train

runner = CliRunner()
IMAGENET_TRAIN = 1_281_167


def estimate_json(*args: str) -> dict:
    result = runner.invoke(cli.app, ["estimate-cost", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


PAPER = ["--arch", "resnet50", "--dataset", "imagenet", "--epochs", "90", "--batch-size", "256", "--low-res", "112"]


@pytest.mark.parametrize(("until", "expected"), [("0.9", 0.338), ("0.5", 0.632)])
def test_paper_settings(until, expected):
    payload = estimate_json(*PAPER, "--until", until)
    assert payload["compute_fraction"] == pytest.approx(expected, abs=0.005)
    assert payload["num_classes"] == 1000 and payload["train_images"] == IMAGENET_TRAIN
    # Baseline = epochs x images x train FLOPs per image at 224. fastai drops each epoch's last
    # partial batch (143 images at batch 256), so exactly: the images in whole batches.
    per_image = payload["train_flops_per_image"]["224"]
    assert payload["baseline_train_flops"] == 90 * (IMAGENET_TRAIN // 256) * 256 * per_image
    assert payload["baseline_train_flops"] == pytest.approx(90 * IMAGENET_TRAIN * per_image, rel=2e-4)
    # Validation: 50,000 images per epoch and once more after BatchNorm recalibration, forward only,
    # at full resolution.
    assert payload["valid_flops"] == 91 * 50_000 * payload["forward_flops_per_image"]["224"]


def test_default_run_matches_train_defaults():
    payload = estimate_json("--images", "6400")
    assert (payload["arch"], payload["epochs"], payload["batch_size"], payload["full_px"]) == ("resnet18", 5, 64, 224)
    assert payload["schedule"]["name"] == "baseline" and payload["compute_saved_frac"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["0.4", "55%", "0.3"])
def test_compute_budget_answer_meets_the_budget_when_fed_back(budget):
    payload = estimate_json(*PAPER, "--budget", budget)
    target = parse_budget(budget).value
    best = payload["budget"]["options"][0]
    assert best["low_px"] == 112
    window = estimate_json(*PAPER, "--until", str(best["until"]))
    assert target * 0.99 <= window["compute_fraction"] <= target
    spread = estimate_json(*PAPER, "--until", "1.0", "--prob", str(best["spread_prob"]))
    # The spread is solved in expectation over its draws, as `trd compare --budget` solves it: by
    # hand, (1 - p) + p c(112)/c(224) of the steps, plus recalibration's share, within the budget and
    # 0.001 of prob from it; this seed's own draw lands within a few binomial sd of that.
    p, per_image = best["spread_prob"], spread["train_flops_per_image"]
    ratio = per_image["112"] / per_image["224"]
    recal = spread["bn_recalibration_flops"] / spread["baseline_train_flops"]
    expected = (1 - p) + p * ratio + recal
    assert expected <= target < (1 - (p - 0.001)) + (p - 0.001) * ratio + recal
    sd = (p * (1 - p) / spread["steps"]) ** 0.5 * (1 - ratio)
    assert abs(spread["compute_fraction"] - expected) < 4 * sd
    assert {o["low_px"] for o in payload["budget"]["options"]} == {96, 112, 128, 160}


def test_time_budget_with_given_throughput():
    throughput = ["--throughput", "224=2600,112=9800"]
    base = estimate_json(*PAPER, *throughput)
    assert base["time_s"] == pytest.approx(90 * (IMAGENET_TRAIN // 256) * 256 * (0.1 / 2600 + 0.9 / 9800), rel=1e-3)
    payload = estimate_json(*PAPER, *throughput, "--budget", "10h")
    best = payload["budget"]["options"][0]
    fed_back = estimate_json(*PAPER, *throughput, "--until", str(best["until"]))
    assert 36000 * 0.99 <= fed_back["time_s"] <= 36000


def test_money_and_devices():
    payload = estimate_json(
        *PAPER, "--until", "0.9", "--throughput", "224=2600,112=9800", "--price-per-hour", "3", "--devices", "8"
    )
    assert payload["time_s"] * 8 == pytest.approx(
        estimate_json(*PAPER, "--until", "0.9", "--throughput", "224=2600,112=9800")["time_s"]
    )
    assert payload["cost"] == pytest.approx(payload["time_s"] / 3600 * 3 * 8)
    assert payload["baseline_cost"] > payload["cost"]


def test_validation_is_counted_on_every_device_as_trd_train_runs_it():
    # ImageNet's 50,000 validation images, 90 epochs and one pass after recalibration, forward only at
    # 224 px, on each of 8 devices: trd train's ranks each validate the whole set (tests/test_distributed.py:
    # two ranks spend twice one process's). Main counted one device's.
    forward = arch_flops("resnet50", 1000, cache=default_cache()).at(224).forward_flops
    one, eight = estimate_json(*PAPER, "--until", "0.9"), estimate_json(*PAPER, "--until", "0.9", "--devices", "8")
    assert one["valid_flops"] == 50_000 * 91 * forward
    assert eight["valid_flops"] == 8 * 50_000 * 91 * forward
    assert eight["train_flops"] == one["train_flops"]  # the training steps are split, not repeated


def test_throughput_between_given_resolutions_interpolates_in_flops():
    flops = arch_flops("resnet50", 1000, cache=default_cache())
    given = Throughput({224: 1000.0, 112: 4000.0}, "test")
    t = given.seconds_per_image(160, flops.at)
    f224, f160, f112 = (flops.at(px).train_flops for px in (224, 160, 112))
    expected = 1 / 4000 + (f160 - f112) / (f224 - f112) * (1 / 1000 - 1 / 4000)
    assert t == pytest.approx(expected)
    assert given.seconds_per_image(96, flops.at) == pytest.approx(1 / 4000 * flops.at(96).train_flops / f112)


def test_gpu_flops_throughput_is_flops_over_sustained_rate():
    payload = estimate_json(*PAPER, "--until", "0.9", "--gpu-flops", "312e12", "--utilisation", "0.5")
    per_image = payload["train_flops_per_image"]
    assert payload["throughput_images_per_s"]["224"] == pytest.approx(156e12 / per_image["224"])
    assert payload["time_s"] == pytest.approx(payload["train_flops"] / 156e12)


# NVIDIA DeepLearningExamples, ResNet-50 v1.5, PyTorch, mixed precision, A100 80GB: training images/s.
NVIDIA_A100_IMAGES_PER_S = {1: 2470, 8: 16621}


@pytest.mark.parametrize("devices", [1, 8])
def test_gpu_time_by_default_is_nvidias_published_resnet50_throughput(devices):
    args = ["--arch", "resnet50", "--dataset", "imagenet", "--epochs", "90", "--batch-size", "256"]
    payload = estimate_json(*args, "--gpu-flops", "312e12", "--devices", str(devices))
    # 90 epochs of 5,004 whole batches of 256 (fastai drops the partial one), at NVIDIA's rate.
    images = 90 * (IMAGENET_TRAIN // 256) * 256
    assert payload["baseline_time_s"] == pytest.approx(images / NVIDIA_A100_IMAGES_PER_S[devices], rel=1e-9)
    assert payload["throughput_source"].startswith("assumed, not measured")
    assert "NVIDIA DeepLearningExamples" in payload["throughput_source"]


def test_utilisation_per_resolution_interpolates_in_flops():
    payload = estimate_json(*PAPER, "--until", "0.9", "--gpu-flops", "312e12", "--utilisation", "224=0.2,112=0.1")
    per_image = {int(px): f for px, f in payload["train_flops_per_image"].items()}
    rates = {int(px): r for px, r in payload["throughput_images_per_s"].items()}
    assert rates[224] == pytest.approx(312e12 * 0.2 / per_image[224])
    assert rates[112] == pytest.approx(312e12 * 0.1 / per_image[112])
    table = arch_flops("resnet50", 1000, cache=default_cache())
    f224, f160, f112 = (table.at(px).train_flops for px in (224, 160, 112))
    between = 0.1 + (f160 - f112) / (f224 - f112) * 0.1  # linear in FLOPs between the two given shares
    from trdcli.plan.estimate import throughput_from_gpu_flops

    rate_160 = throughput_from_gpu_flops(312e12, {224: 0.2, 112: 0.1}, [160], table.at).images_per_s[160]
    assert rate_160 == pytest.approx(312e12 * between / f160)


def test_known_rates_are_interpolated_in_flops_and_scaled_outside():
    # docs/estimate-cost.md: "resolutions in between are interpolated linearly in training FLOPs,
    # outside scaled by FLOPs": time per image at 160 px lies on the line between 112 and 224 px.
    table = arch_flops("resnet50", 1000, cache=default_cache())
    f224, f160, f112, f96 = (table.at(px).train_flops for px in (224, 160, 112, 96))
    throughput = Throughput({224: 1000.0, 112: 3000.0}, "test")
    expected_160 = 1 / 3000 + (f160 - f112) / (f224 - f112) * (1 / 1000 - 1 / 3000)
    assert throughput.seconds_per_image(160, table.at) == pytest.approx(expected_160, rel=1e-12)
    assert throughput.seconds_per_image(96, table.at) == pytest.approx(f96 / f112 / 3000, rel=1e-12)
    assert throughput.seconds_per_image(224, table.at) == 1 / 1000


def test_an_assumed_rate_is_never_called_measured():
    result = runner.invoke(cli.app, ["estimate-cost", *PAPER, "--gpu-flops", "312e12"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "assumed, not measured" in text and "measured throughput" not in text
    result = runner.invoke(cli.app, ["estimate-cost", *PAPER, "--utilisation", "0.3"])
    assert result.exit_code == 1 and "--utilisation is a share of --gpu-flops: give both" in result.stderr


def test_a_share_out_of_range_is_named_as_typed():
    args = ["estimate-cost", *PAPER, "--until", "0.9", "--gpu-flops", "312e12", "--utilisation", "224=0.2,112=1.5"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert "--utilisation must be a share in (0, 1], got 1.5 at 112 px" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_a_cached_plan_never_imports_torch(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRD_CACHE_DIR": str(tmp_path)}
    command = ["-m", "trdcli", "estimate-cost", *PAPER, "--json"]
    first = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr  # measures the FLOPs, with torch, and caches them
    probe = (
        "import runpy, sys; sys.argv = ['trd', *sys.argv[1:]]\n"
        "try: runpy.run_module('trdcli', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('torch' in sys.modules, 'torchvision' in sys.modules, file=sys.stderr)"
    )
    second = subprocess.run([sys.executable, "-c", probe, *command[2:]], env=env, capture_output=True, text=True)
    assert second.stderr.strip().splitlines()[-1] == "False False", second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)


@pytest.mark.slow
def test_measure_times_real_steps_here():
    payload = estimate_json("--images", "640", "--size", "64", "--low-res", "32", "--measure", "--measure-batch", "4")
    rates = payload["throughput_images_per_s"]
    assert set(rates) == {"64", "32"} and all(r > 0 for r in rates.values())
    assert payload["throughput_source"].startswith("measured on cpu")
    # Time is images at each resolution over the measured rate there (no timing comparison: the
    # machine may be busy); the baseline runs every image at the full resolution's rate.
    images = payload["images_by_px"]
    assert payload["time_s"] == pytest.approx(sum(n / rates[px] for px, n in images.items()), rel=1e-9)
    assert payload["baseline_time_s"] == pytest.approx(sum(images.values()) / rates["64"], rel=1e-9)


def test_counts_a_data_folder_without_decoding(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=5, n_valid=2)
    (root / "train" / "circle" / "broken.jpg").write_bytes(b"not decoded, only counted")
    # --feed-sample 0: no loader timing, so nothing is decoded (the feed check decodes a sample).
    payload = estimate_json(str(root), "--batch-size", "4", "--size", "64", "--feed-sample", "0")
    assert payload["train_images"] == 16 and payload["valid_images"] == 6 and payload["num_classes"] == 3
    # With the feed check, the broken file in its sample is one line, exit 1, naming it.
    result = runner.invoke(cli.app, ["estimate-cost", str(root), "--batch-size", "4", "--size", "64"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().endswith("cannot identify image file '" + str(root / "train/circle/broken.jpg") + "'")


def test_plot_and_table_output(tmp_path):
    plot = tmp_path / "plan.png"
    result = runner.invoke(cli.app, ["estimate-cost", *PAPER, "--until", "0.9", "--plot", str(plot), "--budget", "0.5"])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    for needle in ("per resolution", "compute saved", "GFLOPs", "GMACs", "EFLOPs", "budget 0.5", "66.3%"):
        assert needle in result.stdout, needle


@pytest.mark.slow
def test_plan_equals_what_a_real_fit_records(tmp_path):
    """The same settings and seed: estimate-cost's plan and trd train's record agree exactly."""
    root = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    schedule = TRDSchedule(32, until=1.0, prob=0.5, seed=5)
    run = train(
        TrainConfig(
            data=root, epochs=2, size_px=64, batch_size=4, schedule=schedule, seed=5, workers=0, out_dir=tmp_path / "r"
        )
    )
    planned = plan(
        PlanOptions(arch="resnet18", size_px=64, epochs=2, batch_size=4, schedule=schedule, seed=5, data=str(root))
    )
    by_hand = epoch_counts(schedule.plan_px(12, 64, 6), 6)  # 24 images at batch 4: 6 steps an epoch
    assert ran(run) == by_hand
    assert sorted((g.epoch, g.px, g.steps) for g in planned.estimate.groups) == by_hand
    assert planned.estimate.compute.steps_by_px == run.compute.steps_by_px
    assert planned.estimate.compute.train_flops == run.compute.train_flops  # exact, so within 0.1% too
    assert planned.estimate.compute.baseline_train_flops == run.compute.baseline_train_flops


NEEDS_THROUGHPUT = "needs a throughput: --measure, --throughput or --gpu-flops$"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "-5"], "--images must be a positive number of training images, got -5"),
        (["--images", "1000", "--price-per-hour", "2"], f"--price-per-hour {NEEDS_THROUGHPUT}"),
        ([*PAPER, "--budget", "0.1"], r"budget 0.1 .* is infeasible: even every step at 96 px costs 18.4%"),
        (["--images", "1000", "--budget", "12h"], f"a time budget {NEEDS_THROUGHPUT}"),
        (["--images", "1000", "--budget", "cheap"], "--budget must be a fraction"),
        (["--images", "1000", "--arch", "resnet5"], "unknown --arch 'resnet5'"),
        (["--images", "1000", "--throughput", "224:2600"], "--throughput must look like 224=2600"),
        (["--images", "10", "--batch-size", "64"], "batch size 64 is larger than the 10 training images"),
        (
            ["--dataset", "imagenet", "--images", "5"],
            "give the dataset size one way: a DATA folder, --dataset imagenet, or --images N$",
        ),
        (["--images", "1000", "--devices", "0"], "--devices must be at least 1, got 0"),
        (["--images", "1000", "--low-res", "224"], "--low-res=224 must be below"),
        (["--images", "1000", "--throughput", "224=9", "--gpu-flops", "1e12"], "not --throughput and --gpu-flops"),
    ],
)
def test_bad_values_give_one_line_and_exit_1(args, message):
    result = runner.invoke(cli.app, ["estimate-cost", *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr


def test_parsers():
    assert parse_throughput("224=2600, 112=9800") == {224: 2600.0, 112: 9800.0}
    assert parse_budget("40%").value == pytest.approx(0.4)
    assert parse_budget("90m").value == 5400 and parse_budget("2d").kind == "time"
    assert parse_budget("$500").value == 500 and parse_budget("120usd").kind == "money"


def test_estimate_cost_passes_every_option_typed(monkeypatch, tmp_path):
    from trdcli.core.errors import TRDError
    from trdcli.plan.estimate import Budget, GpuRate

    seen = []

    def capture(options):
        seen.append(options)
        raise TRDError("captured")

    monkeypatch.setattr("trdcli.plan.estimate.plan", capture)
    args = ["estimate-cost", str(tmp_path), "--dataset", "imagenet", "--images", "100", "--valid-images", "7"]
    args += ["--classes", "12", "--valid-pct", "0.25", "--arch", "resnet50", "--epochs", "9", "--size", "160"]
    args += ["--batch-size", "32", "--low-res", "96", "--until", "0.7", "--prob", "0.6", "--seed", "4", "--measure"]
    args += ["--measure-batch", "8", "--device", "cpu", "--throughput", "160=50,96=120", "--gpu-flops", "1e14"]
    args += ["--utilisation", "0.3", "--price-per-hour", "2.5", "--devices", "4", "--budget", "12h"]
    args += ["--bn-recalibrate", "3", "--feed-sample", "5", "--min-scale", "0.5", "--prepared", str(tmp_path / "c")]
    args += ["--no-prepared"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1 and "captured" in result.stderr
    assert seen == [
        PlanOptions(
            arch="resnet50",
            size_px=160,
            epochs=9,
            batch_size=32,
            schedule=TRDSchedule(96, until=0.7, prob=0.6, seed=4),
            seed=4,
            data=tmp_path,
            dataset="imagenet",
            images=100,
            valid_images=7,
            classes=12,
            valid_pct=0.25,
            measure=True,
            measure_batch=8,
            device="cpu",
            throughput=Throughput({160: 50.0, 96: 120.0}, "given with --throughput"),
            gpu_rate=GpuRate(1e14, {160: 0.3}),
            price_per_hour=2.5,
            devices=4,
            budget=Budget("time", 12 * 3600.0, "12h"),
            bn_recalibrate=3,
            feed_sample=5,
            min_scale=0.5,
            prepared=tmp_path / "c",
            use_prepared=False,
        )
    ]
