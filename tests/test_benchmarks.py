"""The GPU script, run on the CPU with a tiny setting: it must work the day a GPU is lent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow  # trains for real: over 10 s here
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gpu_script_writes_every_figure_in_one_json(tmp_path):
    env = {
        **os.environ, "ARCH": "resnet18", "FULL": "64", "LOW": "32", "IMAGES": "32", "BATCH": "8", "DEVICE": "cpu",
        "REPEATS": "1", "FEED_SAMPLE": "16", "MEASURE_BATCH": "4", "TRD": f"{sys.executable} -m trdcli",
        "PRECISIONS": "fp32", "COMPILE_BACKEND": "aot_eager", "STEPS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_end_to_end.sh"), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "gpu_end_to_end.json").read_text())
    assert summary["arch"] == "resnet18" and summary["full_px"] == 64
    assert set(summary["model_images_per_s"]) == {"64", "32"} and summary["model_rate_source"].startswith("measured")
    # The feed check read the originals first and, once the copy was made, the copy for 32 px.
    assert summary["feed_originals"]["prepared_dir"] is None
    assert summary["feed_copy"]["prepared_dir"] == str(out / "data-trd-32px")
    assert summary["prepare_s"] > 0
    rows = summary["end_to_end"]
    assert set(rows) == {"baseline", "trd, old", "trd, new", "trd, direct", "trd, copy"}
    # 32 images at batch 8: 4 steps; the baseline's all at 64 px. Each speed-up's ratio is its wall over its FLOPs.
    assert rows["baseline"]["steps_by_px"] == {"64": 4} and rows["baseline"]["flops_speedup"] == 1.0
    for row in rows.values():
        assert sum(row["steps_by_px"].values()) == 4
        assert row["wall_over_flops"] == pytest.approx(row["wall_speedup"] / row["flops_speedup"])
    # Step 4: each precision eager and compiled, a rate at each size, compile time only where compiled.
    timed = summary["precision_compile"]["rows"]
    assert [(r["precision"], r["compiled"]) for r in timed] == [("fp32", False), ("fp32", True)]
    assert all(set(r["images_per_s"]) == {"64", "32"} for r in timed)
    assert timed[0]["compile_s"] is None and set(timed[1]["compile_s"]) == {"64", "32"}
    assert summary["precision_compile"]["fastest"]["precision"] == "fp32"


@pytest.mark.slow  # trains a ResNet-18 a few steps: over 2 s here
def test_the_demo_step_breakdown_times_each_part():
    script = BENCHMARKS / "demo_step_breakdown.py"
    out = subprocess.run([sys.executable, str(script), "--repeats", "1", "--batch", "4"], capture_output=True,
                         text=True, timeout=600, check=True).stdout  # fmt: skip
    times = {line.rsplit(None, 2)[0].strip(): float(line.split()[-2]) for line in out.splitlines() if "ms" in line}
    assert set(times) == {"forward+backward 96 px", "forward+backward 48 px", "optimizer step (fastai Adam)"}
    assert all(ms > 0 for ms in times.values())
    assert "reduced over full, forward+backward:" in out


def _budget_row(family, mean, std, seeds=3, parameter="p"):
    result = {"top1_mean": mean, "top1_std": std, "seeds": list(range(seeds))}
    return {"budget_frac": 0.35, "family": family, "reached": True, "parameter": parameter, "result": result}


def test_the_default_decision_rule_changes_the_default_only_past_both_spreads():
    sys.path.insert(0, str(BENCHMARKS))
    from decide_default import decide

    # The window beats trd by 1.0 point, more than both standard deviations (0.5 and 0.8): change.
    rows = [_budget_row("trd", 0.760, 0.005), _budget_row("window", 0.770, 0.008, parameter="until 0.9")]
    verdict = "35%: change the default: trd 76.0% ± 0.5% is beaten by window (+1.0 pts, until 0.9)"
    assert decide({"budgets": rows}) == [verdict]
    # By 1.0 point with a spread of 1.2 points: within the seeds' spread, so it stays. FFCV is no TRD reading.
    rows = [_budget_row("trd", 0.760, 0.005), _budget_row("window", 0.770, 0.012), _budget_row("ffcv", 0.9, 0.0)]
    assert decide({"budgets": rows})[0].startswith("35%: the default stays")
    rows = [_budget_row("trd", 0.760, 0.005, seeds=2), _budget_row("window", 0.770, 0.008)]
    assert decide({"budgets": rows}) == ["35%: the rule needs 3 seeds of each reading; the fewest has 2"]
