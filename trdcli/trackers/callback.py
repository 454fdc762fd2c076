"""``TRDTracker``: the fastai callback that feeds a run's :mod:`trackers <trdcli.trackers.interface>`.

Steps are sent in blocks (every ``flush_every`` steps and at the end of each training pass):
the losses of a block come to the host in one transfer, so logging adds no synchronisation per
step. A tracker that fails mid-run (disk full, folder removed) is dropped with one warning; the
run and its own files go on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fastai.callback.core import Callback

from trdcli.callbacks.batchnorm import finding_lr
from trdcli.core.errors import ConfigError
from trdcli.core.ledger import baseline_cost
from trdcli.trackers.interface import PREFIX, RunSummary, StepLog, Tracker, _Guarded, check_trackers, make_trackers


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=2)


class TRDTracker(Callback):
    """Sends each step's resolution, FLOPs, compute saved, learning rate, loss and data wait, and
    each epoch's validation, to ``trackers``; needs the Learner's ``ComputeMeter``
    (:func:`~trdcli.callbacks.trd.trd_callbacks`).

    In a notebook, ``Learner(..., cbs=[*trd_callbacks(low_res=112), TRDTracker(TensorBoardTracker(dir))])``
    logs the compute summary when each fit ends (recalibration included) and writes it out;
    ``learn.trd_tracker.close()`` ends the trackers. ``trd train`` calls :meth:`finish` itself with
    the run's result (``finish_after_fit=False``).
    """

    order = 60  # after ComputeMeter (-4.5) has recorded the step and the Recorder (50) its values

    def __init__(
        self,
        *trackers: Tracker | str,
        run_dir: str | Path = "runs/notebook",
        flush_every: int = 50,
        config: dict[str, Any] | None = None,
        warn: Callable[[str], None] = _warn,
        finish_after_fit: bool = True,
    ):
        if flush_every < 1:
            raise ConfigError(f"`flush_every` must be 1 or more steps, got {flush_every}")
        # A name (`--log-to`'s: "tensorboard", "wandb", "mlflow") makes that tracker for ``run_dir``.
        names = [t for t in trackers if isinstance(t, str)]
        check_trackers(names)
        made = iter(make_trackers(names, Path(run_dir), note=warn))
        trackers = tuple(next(made) if isinstance(t, str) else t for t in trackers)
        self.trackers = _Guarded(trackers, warn)
        self.flush_every, self.config, self.finish_after_fit = flush_every, config, finish_after_fit
        self.step = 0  # steps so far, every fit's
        self._flops = [0, 0]  # training FLOPs so far, and the baseline's
        self._pending: list[tuple[StepLog, torch.Tensor]] = []
        self._started = self._active = self._trained = False
        self._logged = None  # the last step logged (ComputeMeter.last_step)

    def before_fit(self):
        # learn.validate() and get_preds() send before_fit, after_epoch and after_fit too, with no
        # training pass: only a fit that trains is logged.
        self._trained = False
        self._active = not finding_lr(self.learn)
        if self._active and not self._started:
            self._started = True
            meter = self.learn.compute_meter
            if meter.resumed:  # a resumed run continues its step count and its compute so far
                self.step = sum(g.steps for g in meter.resumed)
                summary = meter.summary()
                self._flops = [summary.train_flops, summary.baseline_train_flops]
            self.trackers.call("start", self.config or {})

    def after_batch(self):
        if not (self._active and self.training):
            return
        meter = self.learn.compute_meter
        record = meter.last_step
        if record is None or record is self._logged:
            return  # a batch that finished no step (skipped) logs nothing
        self._logged = record
        self._flops[0] += record.train_flops
        self._flops[1] += baseline_cost(record.images, meter.flops_at(record.full_px).train_flops)
        waits = getattr(self.learn.dl, "batch_wait_s", None)
        log = StepLog(
            step=self.step,
            px=record.px,
            images=record.images,
            step_train_flops=record.train_flops,
            run_train_flops=self._flops[0],
            run_baseline_train_flops=self._flops[1],
            lr=float(self.learn.opt.hypers[-1]["lr"]),
            loss=0.0,  # filled in when the block is sent
            data_wait_s=float(waits[self.learn.iter]) if waits and len(waits) > self.learn.iter else None,
        )
        self._pending.append((log, self.learn.loss.detach()))
        self.step += 1
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Send the steps not sent yet: their losses reach the host in one transfer."""
        if not self._pending:
            return
        losses = torch.stack([loss.float() for _, loss in self._pending]).tolist()
        logs = [StepLog(**{**log.__dict__, "loss": loss}) for (log, _), loss in zip(self._pending, losses, strict=True)]
        self._pending = []
        self.trackers.call("log_steps", logs)

    def before_train(self):
        self._trained = True

    def after_train(self):
        if self._active:
            self.flush()

    def after_epoch(self):
        if not (self._active and self._trained):
            return
        recorder = self.learn.recorder
        values = {
            PREFIX + n: float(v)
            for n, v in zip(recorder.metric_names, recorder.log, strict=False)
            if n not in ("epoch", "time") and isinstance(v, int | float)
        }
        self.trackers.call("log_epoch", self.step - 1, self.epoch, values)

    def after_fit(self):
        if not (self._active and self._trained):
            return
        self.flush()
        if self.finish_after_fit:
            summary = self.learn.compute_meter.summary()  # RecalibrateBatchNorm (-4) has run: counted
            scalars = {
                PREFIX + "compute_fraction": summary.compute_fraction,
                PREFIX + "compute_saved_frac": summary.compute_saved_frac,
                PREFIX + "train_compute_saved_frac": summary.train_compute_saved_frac,
                PREFIX + "bn_recalibration_flops": float(summary.recalibration_flops),
            }
            self.trackers.call("finish", RunSummary(step=max(self.step - 1, 0), scalars=scalars))

    def finish(self, summary: RunSummary) -> None:
        """The run's summary (``trd train``, after the final validation), then close."""
        self.flush()
        self.trackers.call("finish", summary)
        self.close()

    def close(self, outcome: str = "finished") -> None:
        """End the trackers' runs, marked with ``outcome`` (``interface.OUTCOMES``) where a tracker keeps one."""
        self.trackers.call("close", outcome)
