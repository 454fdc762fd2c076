"""``RunResult``: what a finished run did and cost, and its machine-readable forms (run.json, history.csv).

The JSON keys are the ones docs/cli.md, "The result object" fixes for ``run.json`` and every ``--json`` output:
extended, never renamed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trdcli.core.cost import ComputeSummary, StepGroup
from trdcli.core.data_wait import DataWait
from trdcli.core.schedules import ResolutionSchedule
from trdcli.data.folders import BadImage
from trdcli.run.config import TrainConfig

FLOPS_UNIT = "FLOPs, 2 per multiply-add (torch.utils.flop_counter); torchvision's GMACs x 2"


@dataclass
class RunResult:
    """What a finished run did, and what it cost."""

    config: TrainConfig
    classes: list[str]
    compute: ComputeSummary
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    # The steps by epoch and resolution (fit 0; earlier processes' too), checked against the plan,
    # and the resolution over the run as a plan_profile (mean px over up to 1,000 runs of steps).
    step_groups: list[StepGroup]
    profile_px: list[float]
    wall_time_s: float
    run_dir: Path
    device: str
    versions: dict[str, str]
    train_images: int
    valid_images: int
    lr: float
    skipped_images: list[BadImage] = field(default_factory=list)
    ignored_files: int = 0  # non-image files in the class folders
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # information, not problems (where a tracker keeps the run)
    diverged: str | None = None  # why the finished run counts as diverged (trd train then exits 1); None: it did not
    data_wait: DataWait | None = None  # how long training waited for data; None if not measured
    prepared_dir: Path | None = None  # the `trd prepare` copy reduced steps read; None: the originals
    feed_check: dict[str, Any] | None = None  # the loader against the model before the fit (CUDA); FeedCheck.json()
    world_size: int = 1  # processes that trained the run together (torchrun ranks)
    devices: list[str] = field(default_factory=list)  # each rank's device, in rank order
    precision: str = "fp32"  # what it trained in: bf16, fp16 (autocast) or fp32
    compile: dict[str, Any] | None = None  # --compile: graphs planned and compiled, recompiles (CompileRecord)
    write_error: str | None = None  # set when the run directory could not be written

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def compute_json(
    *,
    arch: str,
    num_classes: int,
    schedule: ResolutionSchedule,
    seed: int,
    epochs: int,
    batch_size: int,
    compute: ComputeSummary,
) -> dict[str, Any]:
    """The keys ``run.json`` and both ``--json`` outputs share (docs/cli.md, "The result object")."""
    by_px = sorted(compute.flops_by_px, reverse=True)
    return {
        "arch": arch,
        "num_classes": num_classes,
        "full_px": compute.full_px,
        "schedule": schedule.describe(),
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": compute.steps,
        "forward_flops_per_image": {str(px): compute.flops_by_px[px].forward_flops for px in by_px},
        "train_flops_per_image": {str(px): compute.flops_by_px[px].train_flops for px in by_px},
        "steps_by_px": {str(px): compute.steps_by_px[px] for px in by_px},
        "images_by_px": {str(px): compute.images_by_px[px] for px in by_px},
        "train_flops": compute.train_flops,
        "baseline_train_flops": compute.baseline_train_flops,
        "bn_recalibration_flops": compute.recalibration_flops,
        "has_batchnorm": compute.flops_by_px[compute.full_px].has_batchnorm,
        # The run's compute: its steps and BatchNorm recalibration (docs/method.md, "Compute") ...
        "compute_fraction": compute.compute_fraction,
        "compute_saved_frac": compute.compute_saved_frac,
        # ... and the training steps alone.
        "train_compute_fraction": compute.train_compute_fraction,
        "train_compute_saved_frac": compute.train_compute_saved_frac,
        "valid_flops": compute.valid_flops,
        "flops_unit": FLOPS_UNIT,
    }


def run_json(result: RunResult) -> dict[str, Any]:
    """The ``run.json`` object of a run (also ``trd train --json``)."""
    config = result.config
    out = compute_json(
        arch=config.arch,
        num_classes=result.num_classes,
        schedule=config.schedule,
        seed=config.seed,
        epochs=config.epochs,
        batch_size=config.batch_size,
        compute=result.compute,
    )
    out.update(
        metrics=result.metrics,
        history=result.history,
        wall_time_s=result.wall_time_s,
        versions=result.versions,
        device=result.device,
        precision=result.precision,
        compile=result.compile,
        world_size=result.world_size,
        devices=result.devices or [result.device],
        classes=result.classes,
        train_images=result.train_images,
        valid_images=result.valid_images,
        lr=result.lr,
        run_dir=str(result.run_dir),
        skipped_images=[{"path": str(b.path), "reason": b.reason} for b in result.skipped_images],
        ignored_files=result.ignored_files,
        data_wait=result.data_wait.json() if result.data_wait else None,
        # Which images each resolution read: a prepared copy serves reduced steps only.
        images_read_by_px={
            str(px): "prepared" if result.prepared_dir is not None and px != result.compute.full_px else "originals"
            for px in result.compute.steps_by_px
        },
        prepared_dir=str(result.prepared_dir) if result.prepared_dir is not None else None,
        feed_check=result.feed_check,
        warnings=result.warnings,
        notes=result.notes,
        diverged=result.diverged,
        config=config.describe(),
    )
    return out


# History columns that hold a value per resolution, and the prefix of their CSV columns.
_PER_PX_COLUMNS = {"steps_by_px": "steps", "data_wait_s_by_px": "data_wait_s", "train_s_by_px": "train_s"}


def history_csv(history: list[dict[str, Any]]) -> str:
    """One row per epoch; per-resolution values as ``<name>_at_<px>px`` columns (``steps_at_112px``)."""
    pxs = sorted({px for row in history for px in row.get("steps_by_px", {})}, key=int, reverse=True)
    base = list(dict.fromkeys(k for row in history for k in row if k not in _PER_PX_COLUMNS))
    per_px = [key for key in _PER_PX_COLUMNS if any(key in row for row in history)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(base + [f"{_PER_PX_COLUMNS[key]}_at_{px}px" for key in per_px for px in pxs])
    for row in history:
        values = [row.get(key, {}).get(px, 0) for key in per_px for px in pxs]
        writer.writerow([row.get(k, "") for k in base] + values)
    return buffer.getvalue()


def plan_json(report) -> dict[str, Any]:
    """The ``trd estimate-cost --json`` object of a :class:`~trdcli.plan.estimate.PlanReport`."""
    est = report.estimate
    out = compute_json(
        arch=est.arch,
        num_classes=est.dataset.num_classes,
        schedule=est.schedule,
        seed=est.seed,
        epochs=est.shape.epochs,
        batch_size=est.shape.batch_size,
        compute=est.compute,
    )
    out.update(train_images=est.dataset.train_images, valid_images=est.dataset.valid_images)
    if est.throughput is not None:
        out.update(
            time_s=est.time_s,
            baseline_time_s=est.baseline_time_s,
            devices=est.devices,
            throughput_images_per_s={
                str(px): 1 / est.throughput.seconds_per_image(px, report.flops_at) for px in est.compute.flops_by_px
            },
            throughput_source=est.throughput.source,
        )
    if est.cost is not None:
        out.update(cost=est.cost, baseline_cost=est.baseline_cost, price_per_hour=est.price_per_hour)
    if report.feed is not None:
        out["feed"] = report.feed.json()
    if report.budget is not None:
        answer = report.budget
        out["budget"] = {
            "text": answer.budget.text,
            "metric": answer.metric,
            "fraction_of_baseline": answer.budget_frac,
            "options": [
                {
                    "low_px": o.low_px,
                    "until": o.until,
                    "until_fraction": o.fraction,
                    "spread_prob": o.spread_prob,
                    "spread_fraction": o.spread_fraction,
                    "reason": o.reason,
                }
                for o in [answer.best, *answer.alternatives]
            ],
        }
    return out
