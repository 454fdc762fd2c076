"""Plan a run before spending it: compute, time and money of a schedule, and the settings that meet a budget.

The plan goes through the same code as a real run (:func:`trdcli.core.cost.plan_compute`, the
schedule's own ``plan_range``), so for the same settings and seed it agrees exactly with what
``trd train`` records. Time is estimated from throughput (images per second at each
resolution), never from FLOPs alone: small images run at lower hardware efficiency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trdcli.core.cost import (
    ComputeSummary,
    ImageFlops,
    RunShape,
    StepGroup,
    plan_compute,
    plan_groups,
    plan_profile,
    recalibration_images,
)
from trdcli.core.defaults import DEFAULT_MIN_SCALE, check_batchnorm_options, recalibration_batches
from trdcli.core.errors import ConfigError, named
from trdcli.core.ledger import baseline_cost, share_of_baseline
from trdcli.core.schedules import ResolutionSchedule, TRDSchedule
from trdcli.plan.solve import grid, schedule_cost, solve_within
from trdcli.run.feed import DEFAULT_FEED_SAMPLE, FeedCheck, feed_check, measure_loader
from trdcli.run.throughput import Throughput, measure_throughput


@dataclass(frozen=True)
class DatasetSize:
    train_images: int
    valid_images: int
    num_classes: int


IMAGENET = DatasetSize(train_images=1_281_167, valid_images=50_000, num_classes=1000)
DATASETS = {"imagenet": IMAGENET}


@dataclass(frozen=True)
class PublishedRate:
    """A vendor's published training throughput, the source of trd's default GPU utilisation."""

    arch: str
    px: int
    peak_flops_per_s: float  # of one device, at the precision of the measurement
    images_per_s_by_devices: dict[int, float]  # whole-job images/s on 1 device, on 8, ...
    source: str

    def utilisation(self, devices: int, train_flops_per_image: int) -> float:
        """Share of peak one device sustained: the single-device figure for one device, the
        largest multi-device figure (data-parallel overhead included) for several."""
        count = 1 if devices == 1 else max(self.images_per_s_by_devices)
        per_device = self.images_per_s_by_devices[count] / count
        return per_device * train_flops_per_image / self.peak_flops_per_s


NVIDIA_RESNET50_A100 = PublishedRate(
    arch="resnet50",
    px=224,
    peak_flops_per_s=312e12,
    images_per_s_by_devices={1: 2470.0, 8: 16621.0},
    source="NVIDIA DeepLearningExamples, ResNet-50 v1.5, PyTorch, mixed precision, A100 80GB: "
    "2,470 img/s on 1 GPU, 16,621 on 8",
)


def published_utilisation(devices: int, cache=None) -> tuple[float, str]:
    """(utilisation, its source) for a GPU run on ``devices`` devices, from :data:`NVIDIA_RESNET50_A100`."""
    from trdcli.run.flops_cache import arch_flops

    rate = NVIDIA_RESNET50_A100
    train_flops = arch_flops(rate.arch, 1000, cache=cache).at(rate.px).train_flops
    utilisation = rate.utilisation(devices, train_flops)
    return utilisation, f"the share implied by {rate.source}, at {train_flops / 1e9:.1f} GFLOPs per image"


def throughput_from_gpu_flops(
    peak_flops_per_s: float,
    utilisation_by_px: dict[int, float],
    pxs: list[int],
    flops_at: Callable[[int], ImageFlops],
    source: str = "as given",
) -> Throughput:
    """Images/s if the device sustained the given utilisation of ``peak_flops_per_s`` FLOP/s.

    Between the resolutions of ``utilisation_by_px``, utilisation is interpolated linearly in
    train FLOPs; outside them it is the nearest one's.
    """
    if not peak_flops_per_s > 0:
        raise ConfigError(f"`gpu_flops` must be positive (FLOP/s, e.g. 312e12), got {peak_flops_per_s}")
    if not utilisation_by_px:
        raise ConfigError("`utilisation` needs at least one share")
    for px, share in utilisation_by_px.items():
        if not 0 < share <= 1:
            raise ConfigError(f"`utilisation` must be a share in (0, 1], got {share:g} at {px} px")
    known = sorted(utilisation_by_px, key=lambda px: flops_at(px).train_flops)
    xs = [flops_at(px).train_flops for px in known]
    ys = [utilisation_by_px[px] for px in known]
    rates = {
        px: peak_flops_per_s * float(np.interp(flops_at(px).train_flops, xs, ys)) / flops_at(px).train_flops
        for px in pxs
    }
    if len(known) == 1:
        shares = f"{ys[0]:.1%} of it at every resolution"
    else:
        shares = ", ".join(f"{utilisation_by_px[px]:.1%} at {px} px" for px in sorted(known, reverse=True))
    tflops = peak_flops_per_s / 1e12
    return Throughput(rates, f"assumed, not measured: {tflops:,.0f} TFLOP/s per device, {shares} ({source})")


def measurement_points(pxs: list[int], most: int = 5) -> list[int]:
    """The resolutions worth timing: all of them, or for a ramp the ends and a few between (the rest interpolate)."""
    ordered = sorted(set(pxs))
    if len(ordered) <= most:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, most).round().astype(int)
    return [ordered[i] for i in sorted(set(picks))]


@dataclass
class Estimate:
    """A planned run: what it costs in compute, and in time and money where throughput is known."""

    arch: str
    dataset: DatasetSize
    shape: RunShape
    schedule: ResolutionSchedule
    seed: int
    compute: ComputeSummary
    groups: list[StepGroup]  # the plan, counted by epoch and resolution
    profile: np.ndarray  # mean planned px over up to 1,000 equal runs of steps (trdcli.core.cost.plan_profile)
    throughput: Throughput | None = None
    time_s: float | None = None
    baseline_time_s: float | None = None
    devices: int = 1
    price_per_hour: float | None = None
    cost: float | None = None
    baseline_cost: float | None = None
    bn_recalibrate: int | None = None  # as trd train takes it; None: the default


def run_time_s(compute: ComputeSummary, throughput: Throughput, flops_at, devices: int) -> tuple[float, float]:
    """(planned, baseline) wall time: images at each resolution / images per second, split over ``devices``."""
    planned = sum(n * throughput.seconds_per_image(px, flops_at) for px, n in compute.images_by_px.items())
    baseline = sum(compute.images_by_px.values()) * throughput.seconds_per_image(compute.full_px, flops_at)
    return planned / devices, baseline / devices


def estimate(
    arch: str,
    dataset: DatasetSize,
    shape: RunShape,
    schedule: ResolutionSchedule,
    flops_at: Callable[[int], ImageFlops],
    *,
    seed: int = 0,
    throughput: Throughput | None = None,
    devices: int = 1,
    price_per_hour: float | None = None,
    groups: list[StepGroup] | None = None,
    bn_recalibrate: int | None = None,
) -> Estimate:
    """Plan ``schedule`` over ``shape``; add time and money when throughput (and a price) are known."""
    if devices < 1:
        raise ConfigError(f"`devices` must be at least 1, got {devices}")
    check_batchnorm_options(bn_recalibrate=bn_recalibrate)
    if price_per_hour is not None and price_per_hour < 0:
        raise ConfigError(f"`price_per_hour` must be 0 or more, got {price_per_hour}")
    if price_per_hour is not None and throughput is None:
        raise ConfigError(
            "`price_per_hour` needs a throughput: `measure`, `throughput` or `gpu_flops`",
        )
    groups = plan_groups(schedule, shape) if groups is None else groups
    compute = plan_compute(
        schedule, shape, flops_at, valid_images=dataset.valid_images, groups=groups, bn_recalibrate=bn_recalibrate,
        devices=devices,
    )  # fmt: skip
    result = Estimate(
        arch,
        dataset,
        shape,
        schedule,
        seed,
        compute,
        groups,
        plan_profile(schedule, shape),
        throughput,
        devices=devices,
        bn_recalibrate=bn_recalibrate,
    )
    if throughput is not None:
        result.time_s, result.baseline_time_s = run_time_s(compute, throughput, flops_at, devices)
        if price_per_hour is not None:
            result.price_per_hour = price_per_hour
            result.cost = result.time_s / 3600 * price_per_hour * devices
            result.baseline_cost = result.baseline_time_s / 3600 * price_per_hour * devices
    return result


# -- budgets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A budget as the user gave it: a fraction of the baseline's compute, a time, or a price."""

    kind: str  # "fraction", "time" or "money"
    value: float  # fraction, seconds, or currency units
    text: str  # as the user wrote it, for the answer's title

    def __post_init__(self):
        if self.kind not in ("fraction", "time", "money"):
            raise ConfigError(f"budget kind must be fraction, time or money, got {self.kind!r}")
        if not (self.value > 0 and math.isfinite(self.value)):
            raise ConfigError(f"`budget` must be positive, got {self.text!r}")


@dataclass(frozen=True)
class BudgetOption:
    """One way to meet a budget at ``low_px``, or why it cannot."""

    low_px: int
    until: float | None  # window reading: prob 1, reduce the first `until` of the run
    spread_prob: float | None  # spread reading: until 1, reduce each step with this probability
    fraction: float | None  # the window option's cost as a fraction of the baseline (in the budget's metric)
    spread_fraction: float | None
    reason: str = ""


def solve_budget(
    budget_frac: float,
    low_px: int,
    shape: RunShape,
    cost_of_px: Callable[[int], float],
    seed: int = 0,
    recalibration_cost: float = 0.0,
) -> BudgetOption:
    """The least reduction at ``low_px`` that brings cost down to ``budget_frac`` of the baseline.

    ``cost_of_px`` is the per-image cost in the budget's metric (train FLOPs, seconds, money);
    ``recalibration_cost`` what BatchNorm recalibration after the run costs in it (a reduced run
    pays it, the baseline does not: docs/method.md, "Compute"). The window (``until``) and the spread
    (``prob``, in expectation over the draws) are each solved by :mod:`trdcli.plan.solve`, the
    solver ``trd compare --budget`` uses: the smallest value on a 0.001 grid that fits.
    """
    full = shape.full_px
    ratio = cost_of_px(low_px) / cost_of_px(full)
    baseline = baseline_cost(shape.total_images, float(cost_of_px(full)))

    def fraction_of(schedule: ResolutionSchedule) -> float:
        return share_of_baseline(schedule_cost(schedule, shape, cost_of_px)[0] + recalibration_cost, baseline)

    if budget_frac >= 1:
        return BudgetOption(low_px, None, None, 1.0, 1.0, "the full-resolution baseline already fits")
    if budget_frac < ratio:
        reason = f"infeasible: even every step at {low_px} px costs {ratio:.1%} of the baseline"
        return BudgetOption(low_px, None, None, None, None, reason)
    # Values in order of rising compute: the most reduction first.
    window = solve_within(grid(1.0, 0.001), lambda u: fraction_of(TRDSchedule(low_px, until=u)), budget_frac)
    spread = solve_within(
        grid(1.0, 0.0), lambda p: fraction_of(TRDSchedule(low_px, until=1.0, prob=p, seed=seed)), budget_frac
    )
    if window.value is None and spread.value is None:
        reason = f"infeasible: every step at {low_px} px and BatchNorm recalibration cost more than the budget"
        return BudgetOption(low_px, None, None, None, None, reason)
    window_frac = window.spent_frac if window.value is not None else None
    spread_frac = spread.spent_frac if spread.value is not None else None
    return BudgetOption(low_px, window.value, spread.value, window_frac, spread_frac)


def alternative_low_resolutions(full_px: int, min_px: int = 32) -> list[int]:
    """Common low resolutions for a run at ``full_px``: 96/112/128/160 for 224, scaled otherwise."""
    candidates = [round(full_px * f / 8) * 8 for f in (3 / 7, 1 / 2, 4 / 7, 5 / 7)]
    return sorted({px for px in candidates if min_px <= px < full_px})


@dataclass(frozen=True)
class BudgetAnswer:
    budget: Budget
    metric: str  # "compute", "time" or "money"
    budget_frac: float  # the budget as a fraction of the baseline, in its metric
    best: BudgetOption  # at the schedule's low resolution (or half the full one)
    alternatives: list[BudgetOption]


def answer_budget(budget: Budget, plan: Estimate, flops_at: Callable[[int], ImageFlops]) -> BudgetAnswer:
    """The TRD settings that meet ``budget`` for the run ``plan`` describes, at several low resolutions."""
    shape = plan.shape
    if budget.kind == "fraction":
        metric, budget_frac = "compute", budget.value
        cost_of_px = lambda px: float(flops_at(px).train_flops)  # noqa: E731
        recalibration_per_image = float(flops_at(shape.full_px).recalibration_flops)
    else:
        if plan.throughput is None:
            raise ConfigError(
                f"a {budget.kind} budget needs a throughput: `measure`, `throughput` or `gpu_flops`",
            )
        if budget.kind == "money":
            if plan.baseline_cost is None:
                raise ConfigError("a money budget needs `price_per_hour`")
            metric, budget_frac = "money", budget.value / plan.baseline_cost
        else:
            metric, budget_frac = "time", budget.value / plan.baseline_time_s
        cost_of_px = lambda px: plan.throughput.seconds_per_image(px, flops_at)  # noqa: E731
        # A forward pass, without the backward, takes about its share of a training step's FLOPs.
        full = flops_at(shape.full_px)
        recalibration_per_image = cost_of_px(shape.full_px) * full.recalibration_flops / full.train_flops
    # Every option solved reduces steps, so it recalibrates as trd train would after it.
    batches = recalibration_batches(plan.bn_recalibrate, any_step_reduced=True)
    recalibration_cost = recalibration_images(batches, shape) * recalibration_per_image
    schedule = plan.schedule
    if isinstance(schedule, TRDSchedule):
        low_px = schedule.low_px(shape.full_px)
    else:
        low_px = round(shape.full_px / 2)
    best = solve_budget(budget_frac, low_px, shape, cost_of_px, plan.seed, recalibration_cost)
    alternatives = [
        solve_budget(budget_frac, px, shape, cost_of_px, plan.seed, recalibration_cost)
        for px in alternative_low_resolutions(shape.full_px)
        if px != low_px
    ]
    if all(o.until is None and o.fraction is None for o in [best, *alternatives]):
        lowest = min([best, *alternatives], key=lambda o: o.low_px)
        floor = cost_of_px(lowest.low_px) / cost_of_px(shape.full_px)
        raise ConfigError(
            f"budget {budget.text} ({budget_frac:.1%} of the baseline's {metric}) is infeasible: even every step at "
            f"{lowest.low_px} px costs {floor:.1%}"
        )
    return BudgetAnswer(budget, metric, budget_frac, best, sorted(alternatives, key=lambda o: o.low_px))


@dataclass(frozen=True)
class GpuRate:
    """A device's peak FLOP/s and the share of it a training step is assumed to sustain, by resolution.

    ``utilisation`` None: the share NVIDIA's published ResNet-50 figures imply
    (:func:`published_utilisation`), at every resolution.
    """

    peak_flops_per_s: float
    utilisation: dict[int, float] | None = None


@dataclass(frozen=True)
class PlanOptions:
    """What ``trd estimate-cost`` plans, as typed values (``None`` = not given)."""

    arch: str
    size_px: int
    epochs: int
    batch_size: int
    schedule: ResolutionSchedule
    seed: int = 0
    data: Path | None = None  # an image folder whose images are counted
    dataset: str | None = None  # a named dataset ("imagenet")
    images: int | None = None
    valid_images: int | None = None
    classes: int | None = None
    valid_pct: float | None = None
    measure: bool = False
    measure_batch: int | None = None
    device: str | None = None
    throughput: Throughput | None = None  # known images/s
    gpu_rate: GpuRate | None = None
    price_per_hour: float | None = None
    devices: int = 1
    budget: Budget | None = None
    bn_recalibrate: int | None = None  # trd train's: batches after the run; None: its default
    # With a DATA folder: time the training loader on this many of its images at each resolution
    # the schedule uses (trdcli.run.feed); 0 skips it.
    feed_sample: int = DEFAULT_FEED_SAMPLE
    # The copy the feed check times reduced sizes on, as trd train reads it: this one (an error if it is
    # not fresh), or by default a fresh one beside the data; use_prepared False: the originals.
    prepared: Path | None = None
    use_prepared: bool = True
    min_scale: float = DEFAULT_MIN_SCALE  # the training crops', as trd train takes it

    def __post_init__(self):
        if self.feed_sample < 0:
            raise ConfigError(f"`feed_sample` must be 0 (no feed check) or a number of images, got {self.feed_sample}")


@dataclass
class PlanReport:
    estimate: Estimate
    budget: BudgetAnswer | None
    flops_at: Callable[[int], ImageFlops]
    feed: FeedCheck | None = None


def resolve_dataset(options: PlanOptions, folder=None) -> DatasetSize:
    """Dataset size from a named dataset, a folder (counted, not decoded) or ``images``; ``classes`` overrides."""
    sources = [s for s in (options.data, options.dataset, options.images) if s is not None]
    if len(sources) != 1:
        raise ConfigError(
            "give the dataset size one way: a DATA folder, `dataset` imagenet, or `images` N",
        )
    if options.dataset is not None:
        if options.dataset not in DATASETS:
            raise ConfigError(f"unknown `dataset` {options.dataset!r}; known: {', '.join(DATASETS)}")
        size = DATASETS[options.dataset]
    elif options.data is not None:
        folder = folder or _scan(options)
        size = DatasetSize(len(folder.train), len(folder.valid), folder.num_classes)
    else:
        if options.images < 1:
            raise ConfigError(f"`images` must be a positive number of training images, got {options.images}")
        size = DatasetSize(options.images, 0, options.classes or 1000)
    if options.valid_images is not None:
        if options.valid_images < 0:
            raise ConfigError(f"`valid_images` must be 0 or more, got {options.valid_images}")
        size = DatasetSize(size.train_images, options.valid_images, size.num_classes)
    if options.classes is not None:
        if options.classes < 2:
            raise ConfigError(f"`classes` must be at least 2, got {options.classes}")
        size = DatasetSize(size.train_images, size.valid_images, options.classes)
    return size


def _throughput(options: PlanOptions, num_classes: int, pxs: list[int], flops) -> Throughput | None:
    """Images/s from the one source given: measured here, given, or a GPU's assumed rate."""
    given = [name for name, on in (("measure", options.measure), ("throughput", options.throughput is not None),
                                   ("gpu_flops", options.gpu_rate is not None)) if on]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(f"give throughput one way, not {' and '.join(named(given))}")
    if options.measure:
        batch = options.measure_batch or min(options.batch_size, 16)
        return measure_throughput(options.arch, num_classes, measurement_points(pxs), batch, options.device)
    if options.gpu_rate is not None:
        return _gpu_throughput(options.gpu_rate, options.devices, pxs, flops)
    return options.throughput


def _gpu_throughput(rate: GpuRate, devices: int, pxs: list[int], flops) -> Throughput:
    if rate.utilisation is not None:
        return throughput_from_gpu_flops(rate.peak_flops_per_s, rate.utilisation, pxs, flops.at)
    from trdcli.run.flops_cache import default_cache

    utilisation, source = published_utilisation(devices, cache=default_cache())
    source += "; smaller images rarely reach it, so reduced steps may take longer than this"
    return throughput_from_gpu_flops(rate.peak_flops_per_s, {max(pxs): utilisation}, pxs, flops.at, source)


def plan(options: PlanOptions) -> PlanReport:
    """Everything ``trd estimate-cost`` reports: the plan, its time and money, and a budget's answer."""
    from trdcli.run.flops_cache import arch_flops, default_cache
    from trdcli.run.models import check_arch

    # A DATA folder is listed once: its images are counted here and sampled by the feed check.
    folder = _scan(options) if options.data is not None else None
    dataset = resolve_dataset(options, folder)
    shape = RunShape(dataset.train_images, options.batch_size, options.epochs, options.size_px)
    options.schedule.validate(options.size_px)
    flops = arch_flops(options.arch, dataset.num_classes, full_px=options.size_px, cache=default_cache())
    groups = plan_groups(options.schedule, shape)
    pxs = {g.px for g in groups} | {options.size_px}
    if options.budget is not None:
        pxs |= set(alternative_low_resolutions(options.size_px)) | {round(options.size_px / 2)}
    if not all(flops.is_known(px) for px in pxs):
        # Measuring builds the model: check its name first (this imports torchvision). An
        # architecture with every figure cached was built before, and torch is never imported.
        check_arch(options.arch)
    for px in sorted({g.px for g in groups} | {options.size_px}, reverse=True):
        flops.at(px)  # a size the model cannot take is said before the loader is timed
    throughput = _throughput(options, dataset.num_classes, sorted(pxs, reverse=True), flops)
    result = estimate(
        options.arch,
        dataset,
        shape,
        options.schedule,
        flops.at,
        seed=options.seed,
        throughput=throughput,
        devices=options.devices,
        price_per_hour=options.price_per_hour,
        groups=groups,
        bn_recalibrate=options.bn_recalibrate,
    )
    answer = answer_budget(options.budget, result, flops.at) if options.budget is not None else None
    return PlanReport(result, answer, flops.at, _feed(options, folder, groups, throughput, flops.at))


def _scan(options: PlanOptions):
    from trdcli.data.folders import require_readable_if_few, scan_image_folder

    folder = scan_image_folder(options.data, options.valid_pct, options.seed)
    require_readable_if_few(folder, options.batch_size)
    return folder


def _feed(
    options: PlanOptions, folder, groups: list[StepGroup], throughput: Throughput | None, flops_at
) -> FeedCheck | None:
    """The feed check on the DATA folder's own images, at each resolution the schedule uses."""
    if options.data is None or not options.feed_sample:
        return None
    from trdcli.data.loaders import default_workers
    from trdcli.data.prepare import CopyLookup, find_copy, reduced_px_of

    pxs = sorted({g.px for g in groups})
    batch = min(options.batch_size, 32)
    # Reduced sizes read the `trd prepare` copy trd train would: the one named, or a fresh one beside the
    # data; the plan's own groups say the size it must be made for.
    sources = [path for path, _ in folder.train]
    found = (
        find_copy(folder.root, sources, reduced_px_of(groups, options.size_px), options.min_scale, options.prepared)
        if options.use_prepared
        else CopyLookup(None, None)
    )
    if found.reason is not None and options.prepared is not None:
        raise ConfigError(f"`prepared` {found.looked_in} cannot be used: {found.reason}")
    loader = measure_loader(
        folder.train, options.size_px, pxs, options.min_scale, sample=options.feed_sample, batch=batch,
        copies=found.copies,
    )  # fmt: skip
    model = {px: 1 / throughput.seconds_per_image(px, flops_at) for px in pxs} if throughput is not None else None
    return feed_check(loader, model, default_workers(), found.out_dir)


def preset_table(arch: str, size_px: int, epochs: int, batch_size: int, train_images: int) -> list[dict[str, Any]]:
    """Every preset with its parameters, source and planned compute for a reference run."""
    from trdcli.core.presets import PRESETS
    from trdcli.run.flops_cache import arch_flops, default_cache

    shape = RunShape(train_images, batch_size, epochs, size_px)
    flops = arch_flops(arch, 1000, full_px=size_px, cache=default_cache())
    reference = {"arch": arch, "full_px": size_px, "epochs": epochs, "batch_size": batch_size}
    rows = []
    for preset in PRESETS.values():
        schedule = preset.schedule()
        summary = plan_compute(schedule, shape, flops.at)  # recalibrating as trd train does by default
        rows.append(
            {
                "name": preset.name,
                "description": preset.description,
                "source": preset.source,
                "schedule": schedule.describe(),
                "overridable": list(preset.options),
                "compute_fraction": summary.compute_fraction,
                "compute_saved_frac": summary.compute_saved_frac,
                "steps_by_px": {str(px): n for px, n in summary.steps_by_px.items()},
                "reference_run": {**reference, "train_images": train_images},
            }
        )
    return rows
