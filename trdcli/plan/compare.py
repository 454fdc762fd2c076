"""``run_compare``: several settings x seeds under one recipe, with equal-compute baselines; "is TRD worth it here?"

Every run is an ordinary :func:`~trdcli.run.train.train` run with its own run directory under
one compare directory (``<out>/<setting>/seed<k>``), so a rerun of the same comparison skips
the runs that finished and resumes the one that was interrupted. The summary is read back
from each run's ``run.json``: what the table shows is what the runs recorded.

A setting's compute is what its runs spent: training steps, and the forward passes of BatchNorm
recalibration when it recalibrates, as a share of two baselines (:mod:`trdcli.core.ledger`), each
named in ``compare.json``'s ``baselines``: ``compute_fraction`` of the run's own (its steps at full
resolution, as in ``run.json``) and ``recipe_compute_fraction`` of the recipe's (its epochs at full
resolution), which the tables, the plot and the budgets show; for a run of the recipe's epochs the
two are one number, and a fewer-epochs baseline spends a share of the recipe's below 1
(``train_``: the training steps alone).

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

from trdcli.core.errors import ConfigError
from trdcli.core.ledger import share_of_baseline
from trdcli.core.recipes import Recipe
from trdcli.core.schedules import ConstantSchedule
from trdcli.plan.budget import check_budgets, check_families, solve_budgets
from trdcli.plan.setting import Setting, planned_fraction
from trdcli.run.config import TrainConfig
from trdcli.run.observer import TrainObserver
from trdcli.run.rundir import RUN_FILE

COMPARE_FILE = "compare.json"
PLOT_FILE = "compare.png"


def default_settings(size_px: int, budgets: bool = False) -> tuple[Setting, ...]:
    """The baseline and trd's default TRD recipe at half the full resolution; with budgets, the baseline
    alone (the families at each budget include trd's default)."""
    if budgets:
        return (Setting("baseline"),)
    return (Setting("baseline"), Setting("trd", low_res=size_px // 2))


@dataclass(frozen=True)
class CompareConfig:
    recipe: TrainConfig  # its schedule, seed, out_dir and resume are each run's own
    settings: tuple[Setting, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    out_dir: Path = Path("runs/compare")
    equal_compute: bool = True  # add each reducing setting's equal-compute baseline
    # Fractions of the baseline's compute at which every family in `families` (trdcli.plan.budget) is solved
    # and trained; None families: all of them.
    budgets: tuple[float, ...] = ()
    families: tuple[str, ...] | None = None

    def __post_init__(self):
        if not self.settings:
            raise ConfigError("give at least one `setting`")
        check_budgets(self.budgets)
        if self.families is not None and not self.budgets:
            raise ConfigError("`family` picks the families a `budget` solves: give a `budget` with it")
        check_families(self.families)
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
    budget_rows: list = field(default_factory=list)  # trdcli.plan.budget.BudgetRow, one per family and budget
    write_error: str | None = None  # set when compare.json or compare.png could not be written


def run_dir_name(label: str) -> str:
    """A folder name for a setting's label: letters, digits, ``.``, ``_``, ``=`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "setting"


def run_shares(run: dict[str, Any], reference_train_flops: int) -> dict[str, float]:
    """What a run spent, training and recalibrating BatchNorm (``train_``: training alone), as a share of
    its own baseline and of the recipe's (``reference_train_flops``)."""
    spent, train = run["train_flops"] + run.get("bn_recalibration_flops", 0), run["train_flops"]
    own = run["baseline_train_flops"]
    return {
        "compute_fraction": share_of_baseline(spent, own),
        "train_compute_fraction": share_of_baseline(train, own),
        "recipe_compute_fraction": share_of_baseline(spent, reference_train_flops),
        "recipe_train_compute_fraction": share_of_baseline(train, reference_train_flops),
    }


def baselines_described(compared: CompareResult) -> dict[str, str]:
    """compare.json's ``baselines``: which baseline each share is of."""
    recipe = f"the recipe's {compared.config.recipe.epochs} epochs at full resolution (reference_train_flops)"
    return {
        "compute_fraction": "the run's own steps at full resolution, as in run.json",
        "recipe_compute_fraction": recipe,
        "planned_compute_fraction": recipe,
    }


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


def planned_settings(config: CompareConfig, train_images: int, num_classes: int) -> tuple[list[Setting], list]:
    """Every setting the comparison trains, and the budget rows: the given settings with their equal-compute
    baselines, then, with budgets, the full baseline (if not given) and each family's solved setting."""
    settings = with_equal_compute_baselines(config, train_images, num_classes)
    if not config.budgets:
        return settings, []
    families = check_families(config.families)
    rows = solve_budgets(config.budgets, families, config.recipe, train_images, num_classes)
    labels = {s.label for s in settings}
    if not any(_is_full_baseline(s) for s in settings):
        if "baseline" in labels:  # every budget row is measured against the full baseline, labelled so
            raise ConfigError("with a `budget`, the `setting` labelled baseline must be the full baseline")
        settings.insert(0, Setting("baseline"))
        labels.add("baseline")
    for row in rows:
        if row.setting is not None and row.setting.label not in labels:
            settings.append(row.setting)
            labels.add(row.setting.label)
    return settings, rows


def _is_full_baseline(setting: Setting) -> bool:
    return setting.epochs is None and isinstance(setting.schedule(0), ConstantSchedule)


def run_compare(config: CompareConfig, observer: TrainObserver | None = None) -> CompareResult:
    """Train every setting x seed (skipping finished runs, resuming interrupted ones); summarise from run.json."""
    from trdcli.data.folders import scan_image_folder
    from trdcli.trackers.interface import close_run_group, open_run_group, outcome_of

    observer = observer or TrainObserver()
    observer.stage("planning the comparison")
    folder = scan_image_folder(config.recipe.data, config.recipe.valid_pct, config.recipe.seed)
    settings, budget_rows = planned_settings(config, len(folder.train), folder.num_classes)
    results = [SettingResult(s) for s in settings]
    recipe = config.recipe
    # The runs as one group in the trackers (a W&B group, an MLflow parent run), when any is asked for.
    group = open_run_group(recipe.log_to, config.out_dir) if recipe.log_to else None
    try:
        _train_every_run(config, results, group, observer)
    except BaseException as exc:
        if group is not None:
            close_run_group(group, outcome_of(exc))
        raise
    if group is not None:
        close_run_group(group)
    reference = _reference_train_flops(results, config.recipe.epochs)
    compared = CompareResult(config, results, reference, budget_rows)
    _save(compared)
    return compared


def _train_every_run(config: CompareConfig, results: list[SettingResult], group, observer: TrainObserver) -> None:
    from trdcli.run.train import train

    recipe, first = config.recipe, True
    for result in results:
        for seed in config.seeds:
            run_dir = config.out_dir / run_dir_name(result.setting.label) / f"seed{seed}"
            if not (run_dir / RUN_FILE).exists():
                observer.run_label(f"{result.setting.label} seed {seed}")
                # Every image is decoded once, in the first run; the others train on the same folder.
                train(result.setting.config(replace(recipe, check_images=recipe.check_images and first), seed, run_dir),
                      observer, group)  # fmt: skip
                first = False
            run = _finished_run(run_dir, result.setting, seed, result.setting.epochs or recipe.epochs,
                                result.setting.recipe_for(recipe))  # fmt: skip
            result.runs.append({**run, "run_dir": str(run_dir)})
    observer.run_label("")


def _finished_run(run_dir: Path, setting: Setting, seed: int, epochs: int, recipe: Recipe) -> dict[str, Any]:
    """The run.json in ``run_dir``, if it is this setting's run: a directory left by another comparison
    (other options under the same --out) would otherwise be summarised as this one."""
    run = json.loads((run_dir / RUN_FILE).read_text())
    expected = json.loads(json.dumps(setting.schedule(seed).describe()))
    if run.get("schedule") != expected or run.get("epochs") != epochs:
        raise ConfigError(
            f"{run_dir} holds a finished run of another setting (schedule {run.get('schedule', {}).get('name')}, "
            f"{run.get('epochs')} epochs) than `setting` {setting.label}: give another `out` for this comparison"
        )
    # Runs finished before recipes existed trained with the default one.
    ran = run.get("config", {}).get("recipe", Recipe().describe())
    if ran != json.loads(json.dumps(recipe.describe())):
        raise ConfigError(
            f"{run_dir} holds a finished run of another recipe ({ran.get('name')}: {ran.get('opt')}, "
            f"{ran.get('lr_schedule')}) than this comparison's: give another `out` for this comparison"
        )
    return run


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
            "recipe": result.runs[0]["config"].get("recipe"),
        }
        shares = [run_shares(r, compared.reference_train_flops) for r in result.runs]
        row.update({key: statistics.mean(s[key] for s in shares) for key in shares[0]})
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


def budget_summary(compared: CompareResult, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per family and budget: the solved setting's parameters and its row of ``rows`` (the
    :func:`summary_rows`: measured means over seeds), or why the family has none at that budget."""
    by_label = {row["setting"]: row for row in rows}
    out = []
    for row in compared.budget_rows:
        entry: dict[str, Any] = {
            "budget_frac": row.budget_frac,
            "family": row.family,
            "parameter": row.parameter,
            "planned_compute_fraction": row.planned_fraction,
            "reached": row.setting is not None,
            "note": row.note,
        }
        if row.setting is not None:
            seed = compared.config.seeds[0]
            # Each seed draws its own steps; the parameters are the family's, the same for every seed.
            entry["schedule"] = {k: v for k, v in row.setting.schedule(seed).describe().items() if k != "seed"}
            entry["epochs"] = row.setting.epochs or compared.config.recipe.epochs
            entry["result"] = by_label[row.setting.label]
        out.append(entry)
    return out


def compare_json(compared: CompareResult) -> dict[str, Any]:
    rows = summary_rows(compared)
    return {
        "recipe": compared.config.recipe.describe(),
        "seeds": list(compared.config.seeds),
        "reference_train_flops": compared.reference_train_flops,
        "baselines": baselines_described(compared),
        "budgets": budget_summary(compared, rows),
        "settings": rows,
        "runs": [
            {
                "setting": r.setting.label,
                **{k: run[k] for k in ("seed", "run_dir", "metrics", "wall_time_s")},
                **run_shares(run, compared.reference_train_flops),
            }
            for r in compared.settings
            for run in r.runs
        ],  # fmt: skip
    }


def _save(compared: CompareResult) -> None:
    from trdcli.run.fileio import atomic_write_text
    from trdcli.run.plots import save_compare_plot

    out = compared.config.out_dir
    payload = compare_json(compared)
    try:
        atomic_write_text(out / COMPARE_FILE, json.dumps(payload, indent=2))
        save_compare_plot(payload, out / PLOT_FILE)
    except OSError as exc:  # the runs are saved; rerunning the command rebuilds the summary from them
        compared.write_error = f"could not write the comparison summary to {out}: {exc.strerror or exc}"
