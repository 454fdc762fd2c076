"""``run_compare``: several settings x seeds under one recipe, with equal-compute baselines; "is TRD worth it here?"

Every run is an ordinary :func:`~trdcli.train.train` run with its own run directory under
one compare directory (``<out>/<setting>/seed<k>``), so a rerun of the same comparison skips
the runs that finished and resumes the one that was interrupted. The summary is read back
from each run's ``run.json``: what the table shows is what the runs recorded.

A setting's compute is what its runs spent: training steps, and the forward passes of BatchNorm
recalibration when it recalibrates, against the recipe's baseline (``train_compute_fraction``
alone is the training steps, ``run.json``'s ``compute_fraction``).

The **equal-compute baseline** of a setting is the full-resolution baseline trained for the
number of epochs whose compute is closest to the setting's (``fraction * epochs`` rounded, ties
up, at least 1): the fair rival of a schedule that saves compute is the baseline given the same.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trdcli.config import BN_MODES, TrainConfig, recalibration_batches
from trdcli.errors import ConfigError
from trdcli.lr_schedule import OneCycle
from trdcli.observer import TrainObserver
from trdcli.presets import build_schedule
from trdcli.rundir import PROGRESS_FILE, RUN_FILE
from trdcli.schedules import ConstantSchedule, ResolutionSchedule

COMPARE_FILE = "compare.json"
PLOT_FILE = "compare.png"


@dataclass(frozen=True)
class Setting:
    """One way to train, compared with the others under the same recipe."""

    label: str
    preset: str | None = None
    low_res: int | None = None
    until: float | None = None
    prob: float | None = None
    bn_mode: str = "shared"
    bn_recalibrate: int | None = None  # None: the default (recalibrate when any step was reduced)
    tail_lr: float | None = None  # the full-resolution tail's own annealing (TrainConfig.tail_lr_frac)
    epochs: int | None = None  # None: the recipe's; an equal-compute baseline trains fewer
    matches: str | None = None  # for an equal-compute baseline: the setting whose compute it matches

    def __post_init__(self):
        if self.bn_mode not in BN_MODES:
            raise ConfigError(f"`setting` {self.label}: bn_mode must be one of {', '.join(BN_MODES)}")
        if self.bn_recalibrate is not None and self.bn_recalibrate < 0:
            raise ConfigError(f"`setting` {self.label}: bn_recalibrate must be 0 or more batches")
        # A setting that cannot build its schedule or learning-rate curve fails now, not hours into a comparison.
        OneCycle(self.schedule(0).full_tail_start_frac, self.tail_lr)

    def schedule(self, seed: int) -> ResolutionSchedule:
        return build_schedule(self.preset, self.low_res, self.until, self.prob, seed)

    def config(self, recipe: TrainConfig, seed: int, run_dir: Path) -> TrainConfig:
        return replace(
            recipe,
            schedule=self.schedule(seed),
            seed=seed,
            epochs=self.epochs or recipe.epochs,
            bn_mode=self.bn_mode,
            bn_recalibrate=self.bn_recalibrate,
            tail_lr_frac=self.tail_lr,
            out_dir=run_dir,
            resume=run_dir if (run_dir / PROGRESS_FILE).exists() else None,
        )


def default_settings(size_px: int) -> tuple[Setting, ...]:
    """The baseline and trd's default TRD recipe at half the full resolution."""
    return (Setting("baseline"), Setting("trd", low_res=size_px // 2))


@dataclass(frozen=True)
class CompareConfig:
    recipe: TrainConfig  # its schedule, seed, out_dir and resume are each run's own
    settings: tuple[Setting, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    out_dir: Path = Path("runs/compare")
    equal_compute: bool = True  # add each reducing setting's equal-compute baseline

    def __post_init__(self):
        if not self.settings:
            raise ConfigError("give at least one `setting`")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"`seeds` must be distinct, got {list(self.seeds)}")
        labels = [s.label for s in self.settings]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"`setting` labels must be distinct, got {labels}")
        for setting in self.settings:  # each must run at the recipe's size, found now rather than hours in
            try:
                setting.schedule(0).validate(self.recipe.size_px)
            except ConfigError as exc:
                raise ConfigError(f"`setting` {setting.label}: {exc}") from None


@dataclass
class SettingResult:
    setting: Setting
    runs: list[dict[str, Any]] = field(default_factory=list)  # each run's run.json, plus its run_dir

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs if key in run]


@dataclass
class CompareResult:
    config: CompareConfig
    settings: list[SettingResult]
    reference_train_flops: int  # the recipe's full-resolution baseline, every run's compute is measured against it
    write_error: str | None = None  # set when compare.json or compare.png could not be written


def run_dir_name(label: str) -> str:
    """A folder name for a setting's label: letters, digits, ``.``, ``_``, ``=`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "setting"


def planned_fraction(setting: Setting, recipe: TrainConfig, train_images: int, num_classes: int, seed: int) -> float:
    """The setting's compute (training, and BatchNorm recalibration if it recalibrates) as a fraction of the
    recipe's baseline, planned by the code a run records with."""
    from trdcli.cost import FlopsTable, RunShape, default_cache, plan_compute

    shape = RunShape(train_images, recipe.batch_size, setting.epochs or recipe.epochs, recipe.size_px)
    flops = FlopsTable.for_arch(recipe.arch, num_classes, cache=default_cache())
    planned = plan_compute(setting.schedule(seed), shape, flops.at)
    batches = recalibration_batches(setting.bn_recalibrate, set(planned.steps_by_px) != {recipe.size_px})
    recal_flops = min(batches, shape.steps_per_epoch) * recipe.batch_size * flops.at(recipe.size_px).forward_flops
    return (planned.train_flops + recal_flops) / planned.baseline_train_flops


def run_compute_fraction(run: dict[str, Any], reference_train_flops: int) -> float:
    """What a run spent, training and recalibrating BatchNorm, against the recipe's baseline."""
    return (run["train_flops"] + run.get("bn_recalibration_flops", 0)) / reference_train_flops


def equal_compute_epochs(fraction: float, epochs: int) -> int:
    """Whole epochs of the baseline whose compute is closest to ``fraction`` of ``epochs`` epochs.

    A tie goes up (2.5 -> 3): when in doubt, the baseline gets the more compute, not TRD.
    """
    return max(1, math.floor(fraction * epochs + 0.5))


def with_equal_compute_baselines(config: CompareConfig, train_images: int, num_classes: int) -> list[Setting]:
    """The settings, each reducing one followed by its equal-compute baseline (shared when epochs agree)."""
    out: list[Setting] = list(config.settings)
    if not config.equal_compute:
        return out
    seen_epochs = {config.recipe.epochs} | {s.epochs for s in out if isinstance(s.schedule(0), ConstantSchedule)}
    for setting in config.settings:
        if isinstance(setting.schedule(0), ConstantSchedule):
            continue
        fractions = [planned_fraction(setting, config.recipe, train_images, num_classes, s) for s in config.seeds]
        epochs = equal_compute_epochs(statistics.mean(fractions), config.recipe.epochs)
        if epochs in seen_epochs:
            continue
        seen_epochs.add(epochs)
        out.append(Setting(f"baseline-{epochs}ep", epochs=epochs, matches=setting.label))
    return out


def run_compare(config: CompareConfig, observer: TrainObserver | None = None) -> CompareResult:
    """Train every setting x seed (skipping finished runs, resuming interrupted ones); summarise from run.json."""
    from trdcli.data import scan_image_folder
    from trdcli.train import train

    observer = observer or TrainObserver()
    observer.stage("planning the comparison")
    folder = scan_image_folder(config.recipe.data, config.recipe.valid_pct, config.recipe.seed)
    settings = with_equal_compute_baselines(config, len(folder.train), folder.num_classes)
    results = [SettingResult(s) for s in settings]
    recipe, first = config.recipe, True
    for result in results:
        for seed in config.seeds:
            run_dir = config.out_dir / run_dir_name(result.setting.label) / f"seed{seed}"
            if not (run_dir / RUN_FILE).exists():
                observer.run_label(f"{result.setting.label} seed {seed}")
                # Every image is decoded once, in the first run; the others train on the same folder.
                train(result.setting.config(replace(recipe, check_images=recipe.check_images and first), seed, run_dir),
                      observer)  # fmt: skip
                first = False
            result.runs.append({**json.loads((run_dir / RUN_FILE).read_text()), "run_dir": str(run_dir)})
    observer.run_label("")
    reference = _reference_train_flops(results, config.recipe.epochs)
    compared = CompareResult(config, results, reference)
    _save(compared)
    return compared


def _reference_train_flops(results: list[SettingResult], epochs: int) -> int:
    # Every run's baseline_train_flops is its own epochs at full resolution; scaled to the recipe's epochs,
    # they are one number (the steps per epoch and the FLOPs per image are the recipe's).
    run = results[0].runs[0]
    return run["baseline_train_flops"] * epochs // run["epochs"]


def summary_rows(compared: CompareResult) -> list[dict[str, Any]]:
    """One row per setting: means and sample standard deviations over its seeds, compute against the recipe."""
    rows = []
    for result in compared.settings:
        row: dict[str, Any] = {
            "setting": result.setting.label,
            "matches": result.setting.matches,
            "epochs": result.runs[0]["epochs"],
            "seeds": [run["seed"] for run in result.runs],
            "compute_fraction": statistics.mean(
                run_compute_fraction(r, compared.reference_train_flops) for r in result.runs
            ),
            "train_compute_fraction": statistics.mean(
                r["train_flops"] / compared.reference_train_flops for r in result.runs
            ),
        }
        for key, values in (
            ("top1", [run["metrics"]["top1"] for run in result.runs]),
            ("top5", [run["metrics"]["top5"] for run in result.runs if "top5" in run["metrics"]]),
            ("wall_time_s", [run["wall_time_s"] for run in result.runs]),
        ):
            if values:
                row[f"{key}_mean"] = statistics.mean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def compare_json(compared: CompareResult) -> dict[str, Any]:
    return {
        "recipe": compared.config.recipe.describe(),
        "seeds": list(compared.config.seeds),
        "reference_train_flops": compared.reference_train_flops,
        "settings": summary_rows(compared),
        "runs": [
            {
                "setting": r.setting.label,
                **{k: run[k] for k in ("seed", "run_dir", "metrics", "wall_time_s")},
                "compute_fraction": run_compute_fraction(run, compared.reference_train_flops),
                "train_compute_fraction": run["train_flops"] / compared.reference_train_flops,
            }
            for r in compared.settings
            for run in r.runs
        ],  # fmt: skip
    }


def _save(compared: CompareResult) -> None:
    from trdcli.fileio import atomic_write_text
    from trdcli.plots import save_compare_plot

    out = compared.config.out_dir
    payload = compare_json(compared)
    try:
        atomic_write_text(out / COMPARE_FILE, json.dumps(payload, indent=2))
        save_compare_plot(payload, out / PLOT_FILE)
    except OSError as exc:  # the runs are saved; rerunning the command rebuilds the summary from them
        compared.write_error = f"could not write the comparison summary to {out}: {exc.strerror or exc}"
