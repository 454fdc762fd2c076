"""``TRDCallback``: schedule -> (tell the loader the sizes, or resize the batch) -> record.

Every decision is the schedule's (:mod:`trdcli.core.schedules`); the summary of the records
goes through :func:`trdcli.core.cost.summarize_counts`, the function the plan of a run
(:func:`trdcli.core.cost.plan_compute`) goes through too, so plan and record agree exactly.
A training loader with ``plan_next_pass``
(:class:`~trdcli.data.sized_loader.SizedBatchesDL`) is told each epoch's sizes and delivers each
batch at its size, which is checked; any other loader (or ``resize_in_loader=False``) delivers
full size and the batch is resized with an antialiased ``mode``. Validation runs at full size.
BatchNorm handling is its own callbacks (:mod:`trdcli.callbacks.batchnorm`), which this one adds
for its ``bn`` arguments: ``bn_recalibrate`` (default: 8 batches after a fit that reduced a step)
and ``bn_recal_view`` (the training or the test-time view of the images)
:class:`~trdcli.callbacks.batchnorm.RecalibrateBatchNorm`, ``bn="private"``
:class:`~trdcli.callbacks.batchnorm.PrivateBatchNormCallback` (give it when the Learner is created).
"""

from __future__ import annotations

import warnings

import torch
from fastai.callback.core import Callback

from trdcli.callbacks.batchnorm import (
    PrivateBatchNormCallback,
    RecalibrateBatchNorm,
    finding_lr,
    resumed_past_last_epoch,
)
from trdcli.core.cost import (
    ComputeSummary,
    FlopsTable,
    ImageFlops,
    StepCounter,
    StepGroup,
    StepRecord,
    summarize_groups,
)
from trdcli.core.defaults import BN_MODES, DEFAULT_BN_RECAL_VIEW
from trdcli.core.errors import ConfigError, DataError
from trdcli.core.resize import check_resize_mode, resize_batch
from trdcli.core.schedules import ResolutionSchedule, TRDSchedule


def callback_schedule(low_res, until, prob, seed, schedule) -> ResolutionSchedule:
    """``TRDCallback``'s schedule: TRD at ``low_res`` (trd's reading of until and prob), or the one given."""
    if (schedule is None) == (low_res is None):
        raise ConfigError("TRDCallback needs low_res (the reduced resolution in px, for TRD) or a schedule, not both")
    schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed) if schedule is None else schedule
    if not isinstance(schedule, ResolutionSchedule):
        raise ConfigError(f"schedule must be a ResolutionSchedule, got {type(schedule).__name__}")
    return schedule


def batchnorm_companions(bn: str, bn_recalibrate: int | None, bn_recal_view: str) -> list[Callback]:
    """The BatchNorm callbacks ``TRDCallback`` adds for its ``bn`` arguments."""
    if bn not in BN_MODES:
        raise ConfigError(f"`bn` must be one of {', '.join(BN_MODES)}, got {bn!r}")
    recalibrate = RecalibrateBatchNorm(bn_recalibrate, bn_recal_view)
    return [recalibrate] + ([PrivateBatchNormCallback()] if bn == "private" else [])


def square_batch_px(images) -> int:
    """The side of a batch of square images; the errors a loader that is not TRD's can cause."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise DataError("TRDCallback needs (N, C, H, W) image batches as the first model input")
    height, width = images.shape[-2:]
    if height != width:
        raise DataError(
            f"TRDCallback needs square training images, got {height}x{width}; crop to a square size "
            "(e.g. RandomResizedCrop(224))"
        )
    return int(height)


def warn_if_regularisation_unapplied(schedule: ResolutionSchedule, cbs) -> None:
    if schedule.has_regularisation and not any(getattr(cb, "applies_regularisation", False) for cb in cbs):
        warnings.warn(
            f"schedule {schedule.name} raises dropout and mixup per stage; add "
            "trdcli.callbacks.regularisation.StageRegularisation(schedule) to the Learner's callbacks to apply them",
            stacklevel=3,
        )


def _measured_flops(learn, in_channels: int) -> FlopsTable:
    model = getattr(learn.model, "module", learn.model)  # under DDP, the model it wraps
    return FlopsTable.for_model(model, num_classes=getattr(learn.dls, "c", 0) or 0, in_channels=in_channels)


def epoch_plan(schedule: ResolutionSchedule, epoch: int, epochs: int, steps_per_epoch: int, full_px: int) -> list[int]:
    """The size of each step of ``epoch`` of a fit of ``epochs``, handed to the loader before it starts."""
    first, total = epoch * steps_per_epoch, epochs * steps_per_epoch
    return schedule.plan_range(first, first + steps_per_epoch, total, full_px, steps_per_epoch).tolist()


def fit_step(learn) -> tuple[int, int]:
    """(step, total_steps) of the running fit: ``epoch * n_iter + iter`` of ``n_epoch * n_iter``."""
    return learn.epoch * learn.n_iter + learn.iter, learn.n_epoch * learn.n_iter


class TRDCallback(Callback):
    """Temporally Resolution Decrement for a fastai ``Learner``: ``TRDCallback(low_res=112)`` is trd's
    default reading (``TRDSchedule(112)``: 90% of the steps reduced, drawn over the whole run),
    ``TRDCallback(schedule=...)`` any :class:`~trdcli.core.schedules.ResolutionSchedule`.

    Each fit (``fit``, ``fit_one_cycle``, each of ``fine_tune``'s) is scheduled on its own from the
    Learner's counters; ``lr_find`` is left alone. :meth:`summary` is the compute of the steps that
    finished and of BatchNorm recalibration; ``records`` are this process's steps, ``resumed`` a
    resumed run's earlier ones (:class:`~trdcli.core.cost.StepGroup`), ``last_step`` the step that
    finished last. ``keep_records=False`` (what ``trd train`` does) keeps the counts alone, so a
    450,000-step ImageNet run holds a few hundred groups rather than a record per step.
    """

    # After TrainEvalCallback (-10) has set the counters; before MixUp/CutMix (0), so they mix the
    # batch at the size it trains at, and MixedPrecision (10), so the resize runs outside autocast.
    order = -5
    run_valid = False

    def __init__(
        self,
        low_res: int | None = None,
        until: float | None = None,
        prob: float | None = None,
        seed: int = 0,
        *,
        schedule: ResolutionSchedule | None = None,
        mode: str = "bilinear",
        flops: FlopsTable | None = None,
        bn: str = "shared",
        bn_recalibrate: int | None = None,
        bn_recal_view: str = DEFAULT_BN_RECAL_VIEW,
        resize_in_loader: bool = True,
        world_size: int = 1,
        keep_records: bool = True,
    ):
        super().__init__()
        self.schedule = callback_schedule(low_res, until, prob, seed, schedule)
        self.mode, self.flops = check_resize_mode(mode), flops
        self.companions = batchnorm_companions(bn, bn_recalibrate, bn_recal_view)
        self.resize_in_loader = resize_in_loader
        # Each rank sees its share of a step's global batch, the same on every rank: a record counts all.
        self.world_size = world_size
        self.records: list[StepRecord] = []  # the steps this process ran (with keep_records)
        self.keep_records = keep_records
        self.last_step: StepRecord | None = None
        self.resumed: list[StepGroup] = []  # the steps of earlier processes (a resumed run), counted
        self._counter = StepCounter()  # this process's steps, counted as they finish
        self.running_step: StepRecord | None = None  # the step in progress, recorded when it finishes
        self._fit, self._fit_full_px, self._active, self._fit_started = -1, None, True, False
        self._planned_px: list[int] | None = None  # this epoch's sizes, handed to the loader

    @property
    def name(self) -> str:
        return "trd"  # reachable as learn.trd

    @property
    def current_fit(self) -> int:
        """Index of the fit running now (or last run); -1 before the first."""
        return self._fit

    def resume_from(self, groups: list[StepGroup]) -> None:
        """Continue a run whose steps so far are counted in ``groups``: the next fit extends the last one."""
        self.records, self.resumed, self._counter, self.last_step = [], list(groups), StepCounter(), None
        self._fit = max(g.fit for g in groups) - 1 if groups else -1

    def groups(self) -> list[StepGroup]:
        """Every step of the run so far (earlier processes' too), counted by fit, epoch and resolution."""
        return self.resumed + self._counter.groups()

    def reduced_in_fit(self, fit: int) -> bool:
        """Whether a step of ``fit`` ran below its full resolution."""
        return any(g.px != g.full_px for g in self.groups() if g.fit == fit)

    def after_create(self):
        # Companions added here get the events from the next one on; the private BatchNorm copies
        # must exist before the optimizer does, so that one runs its after_create now.
        for cb in self._add_companions():
            if isinstance(cb, PrivateBatchNormCallback):
                cb.after_create()

    def _add_companions(self) -> list[Callback]:
        new = [cb for cb in self.companions if not any(type(have) is type(cb) for have in self.learn.cbs)]
        self.learn.add_cbs(new)
        return new

    def before_fit(self):
        for cb in self._add_companions():  # the Learner was created without this callback
            if isinstance(cb, PrivateBatchNormCallback):
                cb.before_fit()  # it missed this event, in which it checks the private copies exist
        self._active = not finding_lr(self.learn)
        # learn.validate() and get_preds() send before_fit too, with no training pass: a fit is
        # numbered at its first training pass, so they do not count as one.
        self._fit_started = False
        if self._active:
            warn_if_regularisation_unapplied(self.schedule, self.learn.cbs)
            if resumed_past_last_epoch(self.learn):  # trains nothing now, but is the run's fit
                self._number_fit()

    def _number_fit(self) -> None:
        if not self._fit_started:
            self._fit += 1
            self._fit_full_px, self.running_step, self._fit_started = None, None, True

    def before_train(self):
        self._planned_px = None
        if self._active:
            self._number_fit()
        loader = self.learn.dl
        if self._active and self.resize_in_loader and hasattr(loader, "plan_next_pass"):
            self._start_fit_at(loader.full_px)
            self._planned_px = epoch_plan(
                self.schedule, self.learn.epoch, self.learn.n_epoch, len(loader), loader.full_px
            )
            loader.plan_next_pass(self._planned_px)

    def _start_fit_at(self, full_px: int) -> None:
        if self._fit_full_px is None:
            self.schedule.validate(full_px)
            self._fit_full_px = full_px
        elif full_px != self._fit_full_px:
            raise DataError(
                f"training batches changed from {self._fit_full_px} to {full_px} px within one fit; "
                "the data loader must deliver one full resolution"
            )

    def before_batch(self):
        if not self._active:
            return
        images = self.learn.xb[0]
        height = square_batch_px(images)
        step, total_steps = fit_step(self.learn)
        if self._planned_px is None:
            self._start_fit_at(height)
            px = self.schedule.resolution_px(step, total_steps, height, steps_per_epoch=self.learn.n_iter)
            images = resize_batch(images, px, self.mode)
            self.learn.xb = (images, *self.learn.xb[1:])
        elif height != (px := self._planned_px[self.learn.iter]):
            raise DataError(f"the data loader delivered step {step} at {height} px; the schedule planned {px} px")
        if self.flops is None:  # measured once, on the model as it first trains
            self.flops = _measured_flops(self.learn, images.shape[1])
        n_images = images.shape[0] * self.world_size
        self.running_step = StepRecord(
            self._fit, self.learn.epoch, step, total_steps, px, self._fit_full_px, n_images,
            n_images * self.flops.at(px).train_flops,
        )  # fmt: skip

    def after_batch(self):
        # after_batch runs only once the step has finished, so an interrupted step is not counted.
        if self.running_step is not None:
            if self.keep_records:
                self.records.append(self.running_step)
            self._counter.add(self.running_step)
            self.last_step = self.running_step
            self.running_step = None

    def after_train(self):
        self._planned_px = None

    def images_recorded_here(self) -> int:
        """Images of the steps this process ran, as recorded (all ranks' share of each step)."""
        return sum(g.images for g in self.groups_here())

    def groups_here(self) -> list[StepGroup]:
        """The steps this process ran, counted by fit, epoch and resolution."""
        return self._counter.groups()

    def flops_at(self, px: int) -> ImageFlops:
        if self.flops is None:
            raise ConfigError("no step has run yet, so the model's FLOPs are not known")
        return self.flops.at(px)

    def summary(self, fit: int | None = None) -> ComputeSummary:
        """Compute of the recorded steps and BatchNorm recalibration (of one ``fit`` if given) against full
        resolution; ``train_flops`` and ``train_compute_fraction`` are the steps alone."""
        recalibration = getattr(getattr(self, "learn", None), "recalibrate_bn", None)
        images = recalibration.images_after(fit) * self.world_size if recalibration is not None else 0
        return summarize_groups(self.groups(), self.flops_at, fit, recalibration_images=images)
