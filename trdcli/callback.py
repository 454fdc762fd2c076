"""``TRDCallback``: applies a resolution schedule to fastai training batches and records what ran.

The callback is thin: it reads the step from the Learner, asks the schedule for a
resolution, resizes the batch with :func:`trdcli.resize.resize_batch`, and appends a
record. The summary of the records goes through :func:`trdcli.cost.summarize_compute`,
the same function that plans a run, so plan and record agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from fastai.callback.core import Callback
from fastai.callback.mixup import reduce_loss
from fastai.callback.schedule import LRFinder
from fastai.layers import NoneReduce

from trdcli.cost import ComputeSummary, FlopsTable, ImageFlops, summarize_compute
from trdcli.resize import resize_batch
from trdcli.schedules import ResolutionSchedule, TRDSchedule, step_uniforms


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

    Either ``TRDCallback(low_res=112, until=0.9, prob=1.0, seed=0)`` for TRD itself, or
    ``TRDCallback(schedule=...)`` for any :class:`~trdcli.schedules.ResolutionSchedule`
    (``trdcli.presets.get_preset("composer")`` gives the named ones).

    Training batches only: validation always runs at full resolution. Progress comes
    from the Learner (``epoch * n_iter + iter`` of ``n_epoch * n_iter``), so it is right
    under ``fit``, ``fit_one_cycle``, ``fine_tune`` (each of its fits is scheduled on its
    own) and a resumed ``fit(start_epoch=...)``. ``lr_find`` runs are left alone.

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
        until: float = 0.9,
        prob: float = 1.0,
        seed: int = 0,
        *,
        schedule: ResolutionSchedule | None = None,
        mode: str = "bilinear",
        flops: FlopsTable | None = None,
    ):
        super().__init__()
        if schedule is not None and low_res is not None:
            raise ValueError("give low_res (for TRD) or a schedule, not both")
        if schedule is None:
            if low_res is None:
                raise ValueError("TRDCallback needs low_res (the reduced resolution in px) or a schedule")
            schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed)
        if not isinstance(schedule, ResolutionSchedule):
            raise ValueError(f"schedule must be a ResolutionSchedule, got {type(schedule).__name__}")
        resize_batch(torch.zeros(1, 1, 2, 2), 1, mode)  # validates mode now, not at the first batch
        self.schedule = schedule
        self.mode = mode
        self.flops = flops
        self.records: list[StepRecord] = []
        self._fit = -1
        self._fit_full_px: int | None = None
        self._active = True
        self._pending: StepRecord | None = None
        self._mix: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dropout_p: dict[nn.Dropout, float] = {}
        self._loss_func = None

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
        self._fit = records[-1].fit - 1 if records else -1

    # -- fastai events -------------------------------------------------------------------

    def before_fit(self):
        self._active = not any(isinstance(cb, LRFinder) for cb in self.learn.cbs)
        if not self._active:
            return
        self._fit += 1
        self._fit_full_px = None
        self._pending = None
        self._restore()  # a fit interrupted by Ctrl-C never reached after_fit
        self._dropout_p = {m: m.p for m in self.learn.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)}

    def before_batch(self):
        if not self._active:
            return
        images = self.learn.xb[0]
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError("TRDCallback needs (N, C, H, W) image batches as the first model input")
        height, width = images.shape[-2:]
        if height != width:
            raise ValueError(
                f"TRDCallback needs square training images, got {height}x{width}; crop to a square size "
                "(e.g. RandomResizedCrop(224))"
            )
        if self._fit_full_px is None:
            self.schedule.validate(height)
            self._fit_full_px = height
            if self.flops is None:
                self.flops = FlopsTable.for_model(
                    self.learn.model, num_classes=getattr(self.learn.dls, "c", 0) or 0, in_channels=images.shape[1]
                )
        elif height != self._fit_full_px:
            raise ValueError(
                f"training batches changed from {self._fit_full_px} to {height} px within one fit; "
                "the data loader must deliver one full resolution"
            )
        step = self.learn.epoch * self.learn.n_iter + self.learn.iter
        total_steps = self.learn.n_epoch * self.learn.n_iter
        px = self.schedule.resolution_px(step, total_steps, height, steps_per_epoch=self.learn.n_iter)
        images = resize_batch(images, px, self.mode)
        images = self._regularise(images, step, total_steps)
        self.learn.xb = (images, *self.learn.xb[1:])
        n_images = images.shape[0]
        self._pending = StepRecord(
            fit=self._fit,
            epoch=self.learn.epoch,
            step=step,
            total_steps=total_steps,
            px=px,
            full_px=height,
            images=n_images,
            train_flops=n_images * self.flops.at(px).train_flops,
        )

    def after_batch(self):
        # after_batch runs only once the step has finished, so an interrupted step is not counted.
        if self._pending is not None:
            self.records.append(self._pending)
            self._pending = None

    def after_fit(self):
        self._restore()

    def after_cancel_fit(self):
        self._restore()

    # -- regularisation that some schedules raise per stage (EfficientNetV2) ---------------

    def _regularise(self, images: torch.Tensor, step: int, total_steps: int) -> torch.Tensor:
        strengths = self.schedule.regularisation(step, total_steps, self.learn.n_iter)
        self._mix = None
        if "dropout" in strengths:
            for module in self._dropout_p:
                module.p = strengths["dropout"]
        alpha = strengths.get("mixup_alpha", 0.0)
        if alpha <= 0 or len(self.learn.yb) != 1:
            return images
        if self._loss_func is None:
            self._loss_func = self.learn.loss_func
            self.learn.loss_func = self._mixed_loss
        # Draws seeded by (seed, step), like the schedule's, so a rerun mixes the same way.
        rng = np.random.default_rng(int(step_uniforms(getattr(self.schedule, "seed", 0), step)[0] * 2**62))
        n = images.shape[0]
        lam = rng.beta(alpha, alpha, size=n)
        # fastai's convention: the original image keeps the larger weight.
        lam = torch.from_numpy(np.maximum(lam, 1 - lam)).to(images.device, images.dtype)
        perm = torch.from_numpy(rng.permutation(n)).to(images.device)
        self._mix = (self.learn.yb[0][perm], lam)
        return torch.lerp(images[perm], images, lam.view(n, 1, 1, 1))

    def _mixed_loss(self, pred, *yb):
        if self._mix is None or not self.learn.training:
            return self._loss_func(pred, *yb)
        other_targets, lam = self._mix
        with NoneReduce(self._loss_func) as loss_func:
            loss = torch.lerp(loss_func(pred, other_targets), loss_func(pred, *yb), lam)
        return reduce_loss(loss, getattr(self._loss_func, "reduction", "mean"))

    def _restore(self):
        for module, p in self._dropout_p.items():
            module.p = p
        if self._loss_func is not None:
            self.learn.loss_func = self._loss_func
            self._loss_func = None
        self._mix = None

    # -- what ran ------------------------------------------------------------------------

    def flops_at(self, px: int) -> ImageFlops:
        if self.flops is None:
            raise ValueError("no step has run yet, so the model's FLOPs are not known")
        return self.flops.at(px)

    def summary(self, fit: int | None = None) -> ComputeSummary:
        """Compute of the recorded steps (of one ``fit`` if given) against full resolution."""
        records = [r for r in self.records if fit is None or r.fit == fit]
        if not records:
            raise ValueError("no training step has been recorded yet")
        full = {r.full_px for r in records}
        if len(full) > 1:
            raise ValueError(f"the fits ran at different full resolutions {sorted(full)}; pass fit=<index>")
        return summarize_compute((r.px for r in records), (r.images for r in records), full.pop(), self.flops_at)
