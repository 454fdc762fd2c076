"""``TRDCallback``: applies a resolution schedule to fastai training batches and records what ran.

The callback is thin: it reads the step from the Learner, asks the schedule for a
resolution, resizes the batch with :func:`trdcli.resize.resize_batch` (or, with a loader
that takes sizes, :class:`~trdcli.sized_loader.SizedBatchesDL`, hands it the epoch's sizes
and checks each batch arrives at its own), and appends a record. The summary of the
records goes through :func:`trdcli.cost.summarize_compute`, the same function that plans
a run, so plan and record agree exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from fastai.callback.core import Callback
from fastai.callback.schedule import LRFinder

from trdcli.bn import (
    BN_MODES,
    PrivateBatchNorm,
    private_batchnorms,
    recalibrate_batchnorm,
    use_private_batchnorm,
    use_reduced_batchnorm,
)
from trdcli.config import recalibration_batches
from trdcli.cost import ComputeSummary, FlopsTable, ImageFlops, summarize_compute
from trdcli.errors import ConfigError, DataError, is_int
from trdcli.presets import trd_reading
from trdcli.resize import resize_batch
from trdcli.schedules import ResolutionSchedule, TRDSchedule


def fit_step(learn) -> tuple[int, int]:
    """(step, total_steps) of the running fit: ``epoch * n_iter + iter`` of ``n_epoch * n_iter``."""
    return learn.epoch * learn.n_iter + learn.iter, learn.n_epoch * learn.n_iter


@dataclass(frozen=True)
class StepRecord:
    """One completed optimizer step, as it ran."""

    fit: int  # index of the ``fit`` call (``fine_tune`` makes two)
    epoch: int
    step: int  # 0-based step within the fit: epoch * steps_per_epoch + iteration
    total_steps: int
    px: int
    full_px: int
    images: int
    train_flops: int  # images * train FLOPs per image at px


class TRDCallback(Callback):
    """Temporally Resolution Decrement for a fastai ``Learner``.

    Either ``TRDCallback(low_res=112)`` for TRD itself (trd's default recipe: 90% of the steps
    at ``low_res``, drawn at random over the whole run, ``until=1.0, prob=0.9``, and BatchNorm
    recalibrated at the end; docs/method.md has the evidence; ``until`` alone gives a window
    with every step in it reduced, ``prob`` alone spreads over the whole run), or
    ``TRDCallback(schedule=...)`` for any :class:`~trdcli.schedules.ResolutionSchedule`
    (``trdcli.presets.get_preset("composer")`` gives the named ones).

    Resizing: a training loader with ``plan_next_pass`` (trd's
    :class:`~trdcli.sized_loader.SizedBatchesDL`, from ``trdcli.data.build_dataloaders``) is
    told each epoch's sizes before the epoch and delivers each batch at its size (the
    full-size crop reduced in the worker); the callback checks every batch arrived at its
    step's size. Any other
    loader (your own DataLoaders, or ``resize_in_loader=False``) delivers full size and the
    callback resizes the batch with an antialiased filter (``mode``).

    Training batches only: validation always runs at full resolution. Progress comes
    from the Learner (``epoch * n_iter + iter`` of ``n_epoch * n_iter``), so it is right
    under ``fit``, ``fit_one_cycle``, ``fine_tune`` (each of its fits is scheduled on its
    own) and a resumed ``fit(start_epoch=...)``. ``lr_find`` runs are left alone.

    BatchNorm (:mod:`trdcli.bn`): ``bn="private"`` gives reduced steps their own BatchNorm
    copies (pass the callback when creating the Learner, so the optimizer sees them);
    ``bn_recalibrate=N`` re-estimates BatchNorm statistics on N full-resolution training
    batches when each fit ends (default: 8 if any step of the fit was reduced, 0 otherwise).
    Metrics recorded during the fit predate it: ``learn.validate()`` measures the recalibrated
    model. The images it ran are counted in ``bn_recalibration_images``.

    After or during a fit, :meth:`summary` gives steps per resolution, training FLOPs of
    the run and of its full-resolution baseline, and compute saved; it is complete after an
    interrupted fit too, because a step is recorded as soon as it finishes.
    """

    # After TrainEvalCallback (-10) has set the counters; before MixUp/CutMix (0), so they
    # mix the batch at the resolution it trains at, and before MixedPrecision (10), so the
    # resize runs in float32 outside autocast.
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
        resize_in_loader: bool = True,
        world_size: int = 1,
    ):
        super().__init__()
        if bn not in BN_MODES:
            raise ConfigError(f"`bn` must be one of {', '.join(BN_MODES)}, got {bn!r}")
        if bn_recalibrate is not None and (not is_int(bn_recalibrate) or bn_recalibrate < 0):
            raise ConfigError(f"`bn_recalibrate` must be 0 or more batches, got {bn_recalibrate!r}")
        if schedule is not None and low_res is not None:
            raise ConfigError("give low_res (for TRD) or a schedule, not both")
        if schedule is None:
            if low_res is None:
                raise ConfigError("TRDCallback needs low_res (the reduced resolution in px) or a schedule")
            until, prob = trd_reading(until, prob)
            schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed)
        if not isinstance(schedule, ResolutionSchedule):
            raise ConfigError(f"schedule must be a ResolutionSchedule, got {type(schedule).__name__}")
        resize_batch(torch.zeros(1, 1, 2, 2), 1, mode)  # validates mode now, not at the first batch
        self.schedule = schedule
        self.mode = mode
        self.flops = flops
        self.bn = bn
        self.bn_recalibrate = bn_recalibrate
        self.bn_recalibration_images = 0  # images run forward to recalibrate, after the last fit
        self._private_bns: list[PrivateBatchNorm] = []
        self.records: list[StepRecord] = []
        self._fit = -1
        self._fit_full_px: int | None = None
        self._active = True
        self._pending: StepRecord | None = None
        self.resize_in_loader = resize_in_loader
        self._planned_px: list[int] | None = None  # this epoch's sizes, handed to the loader
        # In a distributed run each rank sees its share of a step's global batch, the same
        # number on every rank (the loader shards whole global batches): a record counts all.
        self.world_size = world_size
        self.resumed_records = 0  # records that came from earlier processes (a resumed run)

    @property
    def name(self) -> str:
        return "trd"  # reachable as learn.trd

    @property
    def current_fit(self) -> int:
        """Index of the fit running now (or last run); -1 before the first."""
        return self._fit

    def resume_from(self, records: list[StepRecord]) -> None:
        """Continue a run whose steps so far are ``records``: the next fit extends the last one."""
        self.records = list(records)
        self.resumed_records = len(records)
        self._fit = records[-1].fit - 1 if records else -1

    # -- fastai events -------------------------------------------------------------------

    def after_create(self):
        # Here, when the Learner is created with this callback, no optimizer exists yet: the
        # private BatchNorm parameters it adds are trained like every other.
        if self.bn == "private":
            use_private_batchnorm(self.learn.model)

    def before_fit(self):
        self._active = not any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        if not self._active:
            return
        self._private_bns = private_batchnorms(self.learn.model)
        if self.bn == "private" and not self._private_bns:
            raise ConfigError(
                "bn='private' needs the callback when the Learner is created (cbs=[TRDCallback(...)]), or "
                "trdcli.bn.use_private_batchnorm(model) before it, so the optimizer sees the private parameters"
            )
        self._fit += 1
        self._fit_full_px = None
        self._pending = None
        if self.schedule.has_regularisation and not any(
            getattr(cb, "applies_regularisation", False) for cb in self.learn.cbs
        ):
            warnings.warn(
                f"schedule {self.schedule.name} raises dropout and mixup per stage; add "
                "trdcli.regularisation.StageRegularisation(schedule) to the Learner's callbacks to apply them",
                stacklevel=2,
            )

    def before_train(self):
        # A loader that takes sizes gets this epoch's plan now and delivers each step at its
        # size; any other loader delivers full size and before_batch resizes.
        self._planned_px = None
        loader = self.learn.dl
        if not (self._active and self.resize_in_loader and hasattr(loader, "plan_next_pass")):
            return
        self._start_fit_at(loader.full_px)
        n_iter = len(loader)
        first, total_steps = self.learn.epoch * n_iter, self.learn.n_epoch * n_iter
        self._planned_px = [
            self.schedule.resolution_px(first + i, total_steps, loader.full_px, steps_per_epoch=n_iter)
            for i in range(n_iter)
        ]
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
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise DataError("TRDCallback needs (N, C, H, W) image batches as the first model input")
        height, width = images.shape[-2:]
        if height != width:
            raise DataError(
                f"TRDCallback needs square training images, got {height}x{width}; crop to a square size "
                "(e.g. RandomResizedCrop(224))"
            )
        step, total_steps = fit_step(self.learn)
        if self._planned_px is None:
            self._start_fit_at(height)
            px = self.schedule.resolution_px(step, total_steps, height, steps_per_epoch=self.learn.n_iter)
            images = resize_batch(images, px, self.mode)
            self.learn.xb = (images, *self.learn.xb[1:])
        elif height != (px := self._planned_px[self.learn.iter]):
            raise DataError(f"the data loader delivered step {step} at {height} px; the schedule planned {px} px")
        if self.flops is None:
            model = getattr(self.learn.model, "module", self.learn.model)  # under DDP, the model it wraps
            self.flops = FlopsTable.for_model(
                model, num_classes=getattr(self.learn.dls, "c", 0) or 0, in_channels=images.shape[1]
            )
        use_reduced_batchnorm(self._private_bns, px != self._fit_full_px)
        n_images = images.shape[0] * self.world_size
        self._pending = StepRecord(
            fit=self._fit,
            epoch=self.learn.epoch,
            step=step,
            total_steps=total_steps,
            px=px,
            full_px=self._fit_full_px,
            images=n_images,
            train_flops=n_images * self.flops.at(px).train_flops,
        )

    def after_batch(self):
        # after_batch runs only once the step has finished, so an interrupted step is not counted.
        if self._pending is not None:
            self.records.append(self._pending)
            self._pending = None
        use_reduced_batchnorm(self._private_bns, False)

    def before_validate(self):
        use_reduced_batchnorm(self._private_bns, False)

    def after_train(self):
        self._planned_px = None

    def after_cancel_fit(self):
        use_reduced_batchnorm(self._private_bns, False)

    def after_fit(self):
        use_reduced_batchnorm(self._private_bns, False)
        batches = self.recalibration_batches()
        if self._active and batches:
            # The training loader delivers full-resolution batches: this callback reduces them,
            # and it is not called outside the fit.
            self.bn_recalibration_images = recalibrate_batchnorm(self.learn.model, self.learn.dls.train, batches)

    def images_recorded_here(self) -> int:
        """Images of the steps this process ran, as recorded (all ranks' share of each step)."""
        return sum(r.images for r in self.records[self.resumed_records :])

    def recalibration_batches(self) -> int:
        """Batches to recalibrate on after this fit: as given, or by default only if a step was reduced."""
        reduced = any(r.px != r.full_px for r in self.records if r.fit == self._fit)
        return recalibration_batches(self.bn_recalibrate, reduced)

    # -- what ran ------------------------------------------------------------------------

    def flops_at(self, px: int) -> ImageFlops:
        if self.flops is None:
            raise ConfigError("no step has run yet, so the model's FLOPs are not known")
        return self.flops.at(px)

    def summary(self, fit: int | None = None) -> ComputeSummary:
        """Compute of the recorded steps (of one ``fit`` if given) against full resolution."""
        records = [r for r in self.records if fit is None or r.fit == fit]
        if not records:
            raise ConfigError("no training step has been recorded yet")
        full = {r.full_px for r in records}
        if len(full) > 1:
            raise ConfigError(f"the fits ran at different full resolutions {sorted(full)}; pass fit=<index>")
        return summarize_compute((r.px for r in records), (r.images for r in records), full.pop(), self.flops_at)
