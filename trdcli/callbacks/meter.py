"""``ComputeMeter``: what a fit's steps cost, counted as they finish; the one record every consumer reads.

The size of each step is :class:`~trdcli.callbacks.trd.TRDCallback`'s (a Learner without one trains
and is counted at the size of its batches); this callback numbers the fits, counts each finished
step by fit, epoch and resolution (:class:`~trdcli.core.cost.StepCounter`, memory that does not
grow with the run), and gives the compute summary through :func:`trdcli.core.cost.summarize_groups`,
the function a plan goes through too, so plan and record agree exactly. ``run.json``, the
checkpoint, the trackers and the progress lines all read it (``learn.compute_meter``).
"""

from __future__ import annotations

from fastai.callback.core import Callback

from trdcli.callbacks.batchnorm import finding_lr, resumed_past_last_epoch
from trdcli.core.cost import (
    ComputeSummary,
    FlopsTable,
    ImageFlops,
    StepCounter,
    StepGroup,
    StepRecord,
    summarize_groups,
)
from trdcli.core.errors import ConfigError


def fit_step(learn) -> tuple[int, int]:
    """(step, total_steps) of the running fit: ``epoch * n_iter + iter`` of ``n_epoch * n_iter``."""
    return learn.epoch * learn.n_iter + learn.iter, learn.n_epoch * learn.n_iter


def _measured_flops(learn, in_channels: int) -> FlopsTable:
    model = getattr(learn.model, "module", learn.model)  # under DDP, the model it wraps
    return FlopsTable.for_model(model, num_classes=getattr(learn.dls, "c", 0) or 0, in_channels=in_channels)


class ComputeMeter(Callback):
    """Counts the steps that finished and what they cost (``learn.compute_meter``).

    ``records`` are this process's steps (with ``keep_records``; ``trd train`` keeps the counts
    alone), ``resumed`` a resumed run's earlier ones, ``last_step`` the step that finished last,
    ``running_step`` the one in progress. ``flops``: the model's FLOPs table, measured on the model
    as it first trains when not given. ``world_size``: each rank sees its share of a step's global
    batch, the same on every rank, so a record counts all of them.
    """

    order = -4.5  # after TRDCallback (-5) has sized the step; before the BatchNorm callbacks (-4) read it
    run_valid = False

    def __init__(self, flops: FlopsTable | None = None, world_size: int = 1, keep_records: bool = True):
        super().__init__()
        self.flops, self.world_size, self.keep_records = flops, world_size, keep_records
        self.records: list[StepRecord] = []
        self.resumed: list[StepGroup] = []  # the steps of earlier processes (a resumed run), counted
        self._counter = StepCounter()  # this process's steps
        self.last_step: StepRecord | None = None
        self.running_step: StepRecord | None = None  # recorded when it finishes
        self._fit, self._active, self._fit_started = -1, True, False

    @property
    def current_fit(self) -> int:
        """Index of the fit running now (or last run); -1 before the first."""
        return self._fit

    def resume_from(self, groups: list[StepGroup]) -> None:
        """Continue a run whose steps so far are counted in ``groups``: the next fit extends the last one."""
        self.records, self.resumed, self._counter, self.last_step = [], list(groups), StepCounter(), None
        self._fit = max(g.fit for g in groups) - 1 if groups else -1

    def before_fit(self):
        self._active = not finding_lr(self.learn)
        # learn.validate() and get_preds() send before_fit too, with no training pass: a fit is
        # numbered at its first training pass, or here if it resumes past its last epoch (it
        # trains nothing now, but is the run's fit and is finished by recalibrating).
        self._fit_started = False
        if self._active and resumed_past_last_epoch(self.learn):
            self._number_fit()

    def before_train(self):
        if self._active:
            self._number_fit()

    def _number_fit(self) -> None:
        if not self._fit_started:
            self._fit, self.running_step, self._fit_started = self._fit + 1, None, True

    def before_batch(self):
        trd = getattr(self.learn, "trd", None)
        images = self.learn.xb[0]
        px, full_px = (trd.step_px, trd.full_px) if trd is not None else (images.shape[-1], images.shape[-1])
        if not self._active or px is None:
            return
        if self.flops is None:  # measured once, on the model as it first trains
            self.flops = _measured_flops(self.learn, images.shape[1])
        step, total_steps = fit_step(self.learn)
        n_images = images.shape[0] * self.world_size
        self.running_step = StepRecord(
            self._fit, self.learn.epoch, step, total_steps, px, full_px, n_images,
            n_images * self.flops.at(px).train_flops,
        )  # fmt: skip

    def after_batch(self):
        # after_batch runs only once the step has finished, so an interrupted step is not counted.
        if self.running_step is not None:
            if self.keep_records:
                self.records.append(self.running_step)
            self._counter.add(self.running_step)
            self.last_step, self.running_step = self.running_step, None

    def groups(self) -> list[StepGroup]:
        """Every step of the run so far (earlier processes' too), counted by fit, epoch and resolution."""
        return self.resumed + self._counter.groups()

    def groups_here(self) -> list[StepGroup]:
        """The steps this process ran, counted by fit, epoch and resolution."""
        return self._counter.groups()

    def images_recorded_here(self) -> int:
        """Images of the steps this process ran, as recorded (all ranks' share of each step)."""
        return sum(g.images for g in self.groups_here())

    def reduced_in_fit(self, fit: int) -> bool:
        """Whether a step of ``fit`` ran below its full resolution."""
        return any(g.px != g.full_px for g in self.groups() if g.fit == fit)

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
