"""The scripts in examples/ run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_image_folder

from trdcli.core.schedules import TRDSchedule

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_custom_schedule_runs_as_planned():
    out = run("custom_schedule.py")
    planned = next(line for line in out.splitlines() if line.startswith("planned:"))
    ran = next(line for line in out.splitlines() if line.startswith("ran:"))
    assert planned.split(":", 1)[1].split() == ran.split(":", 1)[1].split()
    assert "of the baseline" in out


@pytest.mark.slow
def test_compare_presets_lists_every_preset():
    from trdcli.core.presets import PRESETS

    out = run("compare_presets.py", "--arch", "resnet18", "--images", "6400", "--epochs", "5", "--batch-size", "64")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == list(PRESETS)


@pytest.mark.slow
def test_notebook_api_on_an_image_folder(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    out = run("notebook_api.py", str(data), "--size", "64", "--low-res", "32", "--epochs", "1", "--bs", "8")
    # 24 images, batch 8: 3 steps, each at 32 px with probability 0.9 (the default recipe).
    planned = TRDSchedule(32, until=1.0, prob=0.9).plan_px(3, 64).tolist()
    steps = {64: planned.count(64), 32: planned.count(32)}
    assert f"steps per resolution: {steps}" in out
    assert "compute saved:" in out
    assert "BatchNorm recalibrated on 24 images" in out  # 8 batches asked, the 3 there are


@pytest.mark.slow
def test_the_demo_depth_sweep_runs_every_setting_it_names():
    # One epoch of two settings: the benchmark's own loop (it once gave every setting one run directory).
    script = EXAMPLES.parent / "benchmarks" / "demo_low_res_sweep.py"
    result = subprocess.run(
        [sys.executable, str(script), "--epochs", "1", "--only", "baseline", "32 px, until 0.9"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if line.startswith("seed 0 ")]
    assert [line.split("top-1")[0].split(None, 2)[2].strip() for line in runs] == ["baseline", "32 px, until 0.9"]
    # 480 images in batches of 32: 15 steps, of which 14 start before 0.9 of the run; a 32 px
    # step of ResNet-18 costs about a quarter of a 64 px one: 14/15 * 3/4 = 70.0% saved by the
    # steps. BatchNorm recalibration then runs 8 batches of 32 forward at 64 px, about a third of
    # a training step's cost per image: 256 / (480 * 3) = 17.8% of the baseline, so about 52.2%.
    assert "saved   0.0%" in runs[0]
    saved = float(runs[1].split("saved")[1].split("%")[0])
    assert saved == pytest.approx(52.2, abs=1.0)
