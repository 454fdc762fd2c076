"""``Setting``: one way to train, compared with the others under the same recipe, and what it plans to spend."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trdcli.core.defaults import DEFAULT_BN_RECAL_VIEW, check_batchnorm_options, check_bn_mode, recalibration_batches
from trdcli.core.errors import ConfigError
from trdcli.core.lr_schedule import OneCycle
from trdcli.core.presets import build_schedule
from trdcli.core.recipes import Recipe, with_overrides
from trdcli.core.schedules import ResolutionSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.rundir import PROGRESS_FILE


@dataclass(frozen=True)
class Setting:
    """One way to train, compared with the others under the same recipe."""

    label: str
    preset: str | None = None
    low_res: int | None = None
    until: float | None = None
    prob: float | None = None
    prob_end: float | None = None  # TRD's chance falling linearly to this at the window's end
    initial_scale: float | None = None  # the composer preset's first scale
    bn_mode: str = "shared"
    bn_recalibrate: int | None = None  # None: the default (recalibrate when any step was reduced)
    bn_recal_view: str = DEFAULT_BN_RECAL_VIEW  # the training or the test-time view of the images
    tail_lr: float | None = None  # the full-resolution tail's own annealing (TrainConfig.tail_lr_frac)
    epochs: int | None = None  # None: the recipe's; an equal-compute baseline trains fewer
    # Recipe options this setting changes (trdcli.core.recipes.Recipe's fields), as (name, value) pairs.
    recipe_options: tuple[tuple[str, Any], ...] = ()
    matches: str | None = None  # for an equal-compute baseline: the setting whose compute it matches

    def __post_init__(self):
        try:
            check_batchnorm_options(self.bn_mode, self.bn_recalibrate, self.bn_recal_view)
        except ConfigError as exc:  # the setting's keys, as typed in it: bn_mode=..., not a flag
            raise ConfigError(f"`setting` {self.label}: {str(exc).replace('`', '')}") from None
        # A setting that cannot build its schedule or learning-rate curve fails now, not hours into a comparison.
        OneCycle(self.schedule(0).full_tail_start_frac, self.tail_lr)

    def schedule(self, seed: int) -> ResolutionSchedule:
        return build_schedule(
            self.preset, self.low_res, self.until, self.prob, seed,
            prob_end=self.prob_end, initial_scale=self.initial_scale,
        )  # fmt: skip

    def recipe_for(self, base: TrainConfig) -> Recipe:
        """The compare's recipe with this setting's recipe options in place."""
        try:
            recipe = with_overrides(base.recipe, **dict(self.recipe_options))
            recipe.check_run(self.epochs or base.epochs)
        except ConfigError as exc:
            raise ConfigError(f"`setting` {self.label}: {exc}") from None
        return recipe

    def config(self, recipe: TrainConfig, seed: int, run_dir: Path) -> TrainConfig:
        return replace(
            recipe,
            schedule=self.schedule(seed),
            seed=seed,
            epochs=self.epochs or recipe.epochs,
            bn_mode=self.bn_mode,
            bn_recalibrate=self.bn_recalibrate,
            bn_recal_view=self.bn_recal_view,
            tail_lr_frac=self.tail_lr,
            recipe=self.recipe_for(recipe),
            out_dir=run_dir,
            resume=run_dir if (run_dir / PROGRESS_FILE).exists() else None,
        )


def planned_fraction(
    setting: Setting, recipe: TrainConfig, train_images: int, num_classes: int, seed: int | None
) -> float:
    """The setting's compute (training, and BatchNorm recalibration if it recalibrates) as a fraction of the
    recipe's baseline (the recipe's epochs at full resolution), planned by the code a run records with.

    ``seed`` None: the expectation over the draws of a random schedule (each step's chance of being
    reduced times its saving), which is what a budget is solved on; otherwise that seed's exact plan.
    """
    from trdcli.core.cost import RunShape, recalibration_images
    from trdcli.core.ledger import baseline_cost, share_of_baseline
    from trdcli.plan.solve import schedule_cost
    from trdcli.run.flops_cache import arch_flops, default_cache

    shape = RunShape(train_images, recipe.batch_size, setting.epochs or recipe.epochs, recipe.size_px)
    flops = arch_flops(recipe.arch, num_classes, full_px=recipe.size_px, cache=default_cache())
    schedule = setting.schedule(0 if seed is None else seed)
    full = flops.at(recipe.size_px)
    check_bn_mode(setting.bn_mode, full.has_batchnorm, recipe.arch)
    setting.recipe_for(recipe)  # a setting's recipe options that cannot run fail now, not hours in
    train_flops, any_reduced = schedule_cost(schedule, shape, lambda px: flops.at(px).train_flops, seed is None)
    batches = recalibration_batches(setting.bn_recalibrate, any_reduced, full.has_batchnorm)
    recal_flops = recalibration_images(batches, shape) * full.recalibration_flops
    baseline = RunShape(train_images, recipe.batch_size, recipe.epochs, recipe.size_px)
    return share_of_baseline(train_flops + recal_flops, baseline_cost(baseline.total_images, full.train_flops))
