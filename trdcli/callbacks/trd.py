"""``TRDCallback``: the schedule's size for each step, handed to the loader or applied to the batch.

Every decision is the schedule's (:mod:`trdcli.core.schedules`). A training loader with
``plan_next_pass`` (:class:`~trdcli.data.sized_loader.SizedBatchesDL`) is told each epoch's sizes
and delivers each batch at its size, which is checked; any other loader (or
``resize_in_loader=False``) delivers full size and the batch is resized with an antialiased
``mode``. Validation runs at full size. What the steps cost is counted beside it by
:class:`~trdcli.callbacks.meter.ComputeMeter`, and BatchNorm is handled by
:mod:`trdcli.callbacks.batchnorm`'s callbacks: :func:`trd_callbacks` gives a Learner all of them.
"""

from __future__ import annotations

import warnings

import torch
from fastai.callback.core import Callback

from trdcli.callbacks.batchnorm import PrivateBatchNormCallback, RecalibrateBatchNorm, finding_lr
from trdcli.callbacks.meter import ComputeMeter, fit_step
from trdcli.core.cost import FlopsTable
from trdcli.core.defaults import DEFAULT_BN_RECAL_VIEW, check_batchnorm_options
from trdcli.core.errors import ConfigError, DataError
from trdcli.core.resize import check_resize_mode, resize_batch
from trdcli.core.schedules import ResolutionSchedule, TRDSchedule

__all__ = ["TRDCallback", "trd_callbacks", "fit_step"]


def callback_schedule(low_res, until, prob, seed, schedule) -> ResolutionSchedule:
    """``TRDCallback``'s schedule: TRD at ``low_res`` (trd's reading of until and prob), or the one given."""
    if (schedule is None) == (low_res is None):
        raise ConfigError("TRDCallback needs low_res (the reduced resolution in px, for TRD) or a schedule, not both")
    schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed) if schedule is None else schedule
    if not isinstance(schedule, ResolutionSchedule):
        raise ConfigError(f"schedule must be a ResolutionSchedule, got {type(schedule).__name__}")
    return schedule


def companions(
    bn: str = "shared",
    bn_recalibrate: int | None = None,
    bn_recal_view: str = DEFAULT_BN_RECAL_VIEW,
    flops: FlopsTable | None = None,
    world_size: int = 1,
    keep_records: bool = True,
) -> list[Callback]:
    """The callbacks a TRD fit needs beside ``TRDCallback``: the meter and BatchNorm's, for the ``bn`` arguments."""
    check_batchnorm_options(bn, mode_name="bn")
    meter = ComputeMeter(flops, world_size, keep_records)
    recalibrate = RecalibrateBatchNorm(bn_recalibrate, bn_recal_view)
    return [meter, recalibrate] + ([PrivateBatchNormCallback()] if bn == "private" else [])


def trd_callbacks(low_res=None, until=None, prob=None, seed=0, **options) -> list[Callback]:
    """Every callback a fastai Learner needs to train with TRD: ``Learner(..., cbs=trd_callbacks(low_res=112))``.

    ``TRDCallback`` (the size of each step), ``ComputeMeter`` (what the steps cost:
    ``learn.compute_meter.summary()``), ``RecalibrateBatchNorm`` and, with ``bn="private"``,
    ``PrivateBatchNormCallback``. Takes :class:`TRDCallback`'s arguments.
    """
    trd = TRDCallback(low_res, until, prob, seed, **options)
    return [trd, *trd.companions]


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


def epoch_plan(schedule: ResolutionSchedule, epoch: int, epochs: int, steps_per_epoch: int, full_px: int) -> list[int]:
    """The size of each step of ``epoch`` of a fit of ``epochs``, handed to the loader before it starts."""
    first, total = epoch * steps_per_epoch, epochs * steps_per_epoch
    return schedule.plan_range(first, first + steps_per_epoch, total, full_px, steps_per_epoch).tolist()


def add_missing_companions(trd: TRDCallback, event: str) -> None:
    """``TRDCallback`` given alone (``cbs=TRDCallback(low_res=112)``, the form before :func:`trd_callbacks`)
    still counts and recalibrates: the companions the Learner lacks are added and sent the ``event``
    they were added in (fastai sends an event to the callbacks it had when the event began)."""
    learn = trd.learn
    new = [cb for cb in trd.companions if not any(type(have) is type(cb) for have in learn.cbs)]
    learn.add_cbs(new)
    for cb in new:
        cb(event)


# The names TRDCallback's counts had before ComputeMeter held them: read from the meter.
METER_READINGS = frozenset(
    {"records", "resumed", "last_step", "running_step", "current_fit", "resume_from", "groups", "groups_here",
     "images_recorded_here", "reduced_in_fit", "flops", "flops_at", "summary", "keep_records", "world_size"}
)  # fmt: skip


class TRDCallback(Callback):
    """Temporally Resolution Decrement for a fastai ``Learner``: the size of each training step.

    ``TRDCallback(low_res=112)`` is trd's default reading (``TRDSchedule(112)``), ``schedule=`` any
    :class:`~trdcli.core.schedules.ResolutionSchedule`; each fit is scheduled on its own, ``lr_find``
    left alone. ``step_px``/``full_px``: the running step's sizes. Give a Learner :func:`trd_callbacks`;
    given alone, it adds the meter and BatchNorm's callbacks itself (from ``companion_options``), and
    its old count names (``records``, ``summary()``, ...) read ``learn.compute_meter``.
    """

    # After TrainEvalCallback (-10) has set the counters; before MixUp/CutMix (0), so they mix the
    # batch at the size it trains at, and MixedPrecision (10), so the resize runs outside autocast.
    order = -5
    run_valid = False

    def __init__(self, low_res=None, until=None, prob=None, seed=0, *, schedule: ResolutionSchedule | None = None,
                 mode: str = "bilinear", resize_in_loader: bool = True, **companion_options):  # fmt: skip
        super().__init__()
        self.schedule = callback_schedule(low_res, until, prob, seed, schedule)
        self.mode, self.resize_in_loader = check_resize_mode(mode), resize_in_loader
        self.companions = companions(**companion_options)
        self.step_px: int | None = None
        self.full_px: int | None = None  # the fit's full resolution, fixed by its first batch
        self._active, self._planned_px = True, None  # this epoch's sizes, handed to the loader

    @property
    def name(self) -> str:
        return "trd"  # reachable as learn.trd

    def __getattr__(self, name):
        if name in METER_READINGS:
            meter = getattr(self.__dict__.get("learn"), "compute_meter", None) or self.__dict__["companions"][0]
            return getattr(meter, name)
        return super().__getattr__(name)

    def after_create(self):
        add_missing_companions(self, "after_create")  # private BatchNorm copies before the optimizer

    def before_fit(self):
        add_missing_companions(self, "before_fit")  # the Learner was created without this callback
        self._active, self.full_px, self._planned_px = not finding_lr(self.learn), None, None
        if self._active:
            warn_if_regularisation_unapplied(self.schedule, self.learn.cbs)

    def before_train(self):
        loader, self._planned_px = self.learn.dl, None
        if self._active and self.resize_in_loader and hasattr(loader, "plan_next_pass"):
            self._start_fit_at(loader.full_px)
            self._planned_px = epoch_plan(self.schedule, self.learn.epoch, self.learn.n_epoch, len(loader),
                                          loader.full_px)  # fmt: skip
            loader.plan_next_pass(self._planned_px)

    def _start_fit_at(self, full_px: int) -> None:
        if self.full_px is None:
            self.schedule.validate(full_px)
            self.full_px = full_px
        elif full_px != self.full_px:
            raise DataError(
                f"training batches changed from {self.full_px} to {full_px} px within one fit; "
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
            self.learn.xb = (resize_batch(images, px, self.mode), *self.learn.xb[1:])
        elif height != (px := self._planned_px[self.learn.iter]):
            raise DataError(f"the data loader delivered step {step} at {height} px; the schedule planned {px} px")
        self.step_px = px

    def after_batch(self):
        self.step_px = None
