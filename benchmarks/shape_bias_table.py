"""Shape bias of every run of a `trd compare` on the demo's data, with 95% Wilson intervals.

    python benchmarks/shape_bias_table.py COMPARE_DIR CONFLICT_DIR --size 96 [--json OUT.json]

For each setting (a folder of COMPARE_DIR) and seed: the top-1 of the last epoch (before any
BatchNorm recalibration), the final top-1 (after it), the shape bias on CONFLICT_DIR's cue-conflict
images (`<shape>/<shape>N-<texture>M.png`, as `trd demo` writes them) with its interval over those
images, and the share of images on which either cue was named. Then per setting: means +- std over
the seeds, and the shape bias of all seeds' decisions pooled, with its interval.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trdcli.evaluate.cue_conflict import wilson_interval
from trdcli.evaluate.evaluation import class_shape_bias
from trdcli.run.rundir import load_model


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} +- {100 * std:.1f}"


def measure(compare_dir: Path, conflict_dir: Path, size_px: int) -> list[dict]:
    rows = []
    for run_file in sorted(compare_dir.glob("*/seed*/run.json")):
        run = json.loads(run_file.read_text())
        # The network's outputs are in its classes' order, which run.json records.
        bias = class_shape_bias(load_model(run_file.parent), run["classes"], conflict_dir, size_px)
        rows.append({
            "setting": run_file.parent.parent.name, "seed": run["seed"],
            "top1_last_epoch": run["history"][-1]["accuracy"], "top1": run["metrics"]["top1"],
            "recalibrated": run["bn_recalibration_flops"] > 0, "compute_fraction": run["compute_fraction"],
            "shape_decisions": bias.shape_decisions, "texture_decisions": bias.texture_decisions,
            "images": bias.images, "shape_bias": bias.shape_bias, "shape_bias_ci95": list(bias.shape_bias_ci95),
        })  # fmt: skip
    return rows


def tables(rows: list[dict]) -> tuple[Table, Table]:
    runs = Table(title="each run: top-1 (%), shape bias (%) with its 95% Wilson interval", title_justify="left")
    for column in ("setting", "seed", "last epoch", "final", "shape bias", "interval", "cue named"):
        runs.add_column(column, justify="left" if column == "setting" else "right")
    for r in rows:
        low, high = r["shape_bias_ci95"]
        runs.add_row(
            r["setting"], str(r["seed"]), _pct(r["top1_last_epoch"]), _pct(r["top1"]), _pct(r["shape_bias"]),
            f"{_pct(low)}-{_pct(high)}", _pct((r["shape_decisions"] + r["texture_decisions"]) / r["images"]),
        )  # fmt: skip
    summary = Table(title="per setting: mean +- std over seeds; shape bias pooled over seeds", title_justify="left")
    for column in (
        "setting",
        "seeds",
        "compute",
        "top-1 last epoch",
        "top-1 final",
        "shape bias",
        "pooled",
        "interval",
    ):
        summary.add_column(column, justify="left" if column == "setting" else "right")
    for setting in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == setting]
        shape = sum(r["shape_decisions"] for r in group)
        decided = shape + sum(r["texture_decisions"] for r in group)
        low, high = wilson_interval(shape, decided)
        summary.add_row(
            setting, str(len(group)), _mean_std([r["compute_fraction"] for r in group]),
            _mean_std([r["top1_last_epoch"] for r in group]), _mean_std([r["top1"] for r in group]),
            _mean_std([r["shape_bias"] for r in group]), _pct(shape / decided) if decided else "-",
            f"{_pct(low)}-{_pct(high)}" if decided else "-",
        )  # fmt: skip
    return runs, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_dir", type=Path)
    parser.add_argument("conflict_dir", type=Path)
    parser.add_argument("--size", type=int, required=True, help="the runs' full resolution in px")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args.compare_dir, args.conflict_dir, args.size)
    console = Console(width=160)
    for table in tables(rows):
        console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
