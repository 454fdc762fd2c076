"""The fastai callbacks ``train()`` adds to report progress and checkpoint each epoch, and the state they share."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fastai.callback.core import Callback

from trdcli.callbacks.meter import fit_step
from trdcli.core.data_wait import DataWait, epoch_columns, measure_epoch
from trdcli.core.divergence import DivergenceWatch
from trdcli.core.lr_schedule import LRSchedule
from trdcli.run.distributed import Ranks, any_rank, barrier, gathered
from trdcli.run.faults import Preempted
from trdcli.run.observer import TrainObserver, WarningLog
from trdcli.run.rundir import Progress, save_checkpoint


def _times(scale: float, frac_at, pos: float) -> float:
    return scale * frac_at(pos)


def lr_scheduler(curve: LRSchedule, peak_lr: float):
    """fastai's ``ParamScheduler`` following ``curve`` (what ``fit_one_cycle`` adds, for any schedule);
    momentum too where the schedule has a curve for it (one-cycle's)."""
    from fastai.callback.schedule import ParamScheduler

    scheds = {"lr": partial(_times, peak_lr, curve.lr_frac_at)}
    if curve.schedules_momentum:
        scheds["mom"] = curve.mom_at
    return ParamScheduler(scheds)


@dataclass
class FitState:
    """What the training loop's callbacks and ``train()`` share during one run."""

    run_dir: Path
    observer: TrainObserver
    identity: dict[str, Any]  # rundir.run_identity(): what a resume must match
    lr: float
    log: WarningLog
    start_epoch: int = 0  # > 0 when resuming: epochs before it ran in an earlier process
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_saved: int = 0
    wall_before_s: float = 0.0  # wall time of the earlier processes of a resumed run
    fit_started_at: float = 0.0  # time.perf_counter() when this process's fit began
    fit_wall_time_s: float | None = None  # the whole run's training time, once the fit has ended
    ranks: Ranks = field(default_factory=Ranks)
    compile_record: Any = None  # trdcli.run.compile.CompileRecord of a --compile run

    def start_clock(self) -> None:
        self.fit_started_at = time.perf_counter()

    def stop_clock(self) -> None:
        self.fit_wall_time_s = self.wall_time_s()

    def wall_time_s(self) -> float:
        return self.wall_before_s + time.perf_counter() - self.fit_started_at


def _skipped(learn, state: FitState) -> bool:
    # A resumed fit_one_cycle(start_epoch=k) replays epochs 0..k-1 without training: they ran
    # before, and their rows are in the history already.
    return learn.epoch < state.start_epoch


class ReportProgress(Callback):
    """Each step and epoch to the observer; each epoch's row (metrics, wall time, steps by px) to the history."""

    order = 70  # after the Recorder (50) has smoothed the loss

    def __init__(self, state: FitState):
        self.state = state
        self._ips: float | None = None
        self._loss: float | None = None
        self._t_step = self._t_epoch = 0.0

    def before_fit(self):
        self._t_step = self._t_epoch = time.perf_counter()
        self._ips = None
        self._loss: float | None = None  # the smoothed loss last read, shown until the next read

    def before_epoch(self):
        self._t_epoch = time.perf_counter()

    def after_batch(self):
        if not self.learn.training:
            return
        now = time.perf_counter()
        ips = self.learn.xb[0].shape[0] / max(now - self._t_step, 1e-9)
        self._ips = ips if self._ips is None else 0.9 * self._ips + 0.1 * ips
        self._t_step = now
        step, _ = fit_step(self.learn)
        px = self.learn.xb[0].shape[-1]
        if self._loss is None or step % LOSS_CHECK_EVERY == 0 or self.learn.iter == self.learn.n_iter - 1:
            self._loss = float(self.learn.smooth_loss)  # a host read: once per LOSS_CHECK_EVERY steps
        self.state.observer.step_done(step, self.learn.epoch, px, self._loss, self._ips)

    def before_validate(self):
        self.state.observer.validating(self.learn.epoch)

    def after_epoch(self):
        if _skipped(self.learn, self.state):
            return
        names = self.learn.recorder.metric_names[1:-1]  # drop 'epoch' and 'time'
        values = self.learn.recorder.values[-1] if self.learn.recorder.values else []
        row: dict[str, Any] = {"epoch": self.learn.epoch}
        row.update({n: float(v) for n, v in zip(names, values, strict=False)})
        row["wall_s"] = time.perf_counter() - self._t_epoch
        meter = self.learn.compute_meter
        ran = [g for g in meter.groups() if g.epoch == self.learn.epoch and g.fit == meter.current_fit]
        row["steps_by_px"] = {str(g.px): g.steps for g in sorted(ran, key=lambda g: -g.px)}
        timer = getattr(self.learn, "data_wait_timer", None)
        if timer is not None and timer.last_phase is not None:
            row.update(epoch_columns(timer.last_phase))
        self.state.history.append(row)
        self.state.observer.epoch_done(row)
        self._t_step = time.perf_counter()


class SaveCheckpoint(Callback):
    """After each epoch: weights, optimizer and progress, so an interrupted run resumes there."""

    order = 80  # after ReportProgress has added the epoch's row

    def __init__(self, state: FitState):
        self.state = state

    def after_epoch(self):
        if _skipped(self.learn, self.state):
            return
        if self.state.ranks.is_main:
            self._save()
        barrier(self.state.ranks)  # no rank starts the next epoch before the checkpoint is on disk

    def _save(self):
        state = self.state
        progress = Progress(
            epochs_done=self.learn.epoch + 1,
            step_groups=[asdict(g) for g in self.learn.compute_meter.groups()],
            history=state.history,
            wall_time_s=state.wall_time_s(),
            lr=state.lr,
            run=state.identity,
        )
        try:
            save_checkpoint(state.run_dir, self.learn, progress)
        except OSError as exc:
            state.log.warn(f"could not save the checkpoint to {state.run_dir}: {exc.strerror or exc}")
            return
        state.epochs_saved = progress.epochs_done


class SeededPasses(Callback):
    """Each pass over the training data (every epoch, then BatchNorm recalibration) shuffled and
    augmented from the run's seed and the pass's index alone: a resumed run's epoch is shuffled as
    the uninterrupted run's was, not as the first epoch, and a run finished from its last
    checkpoint recalibrates on the batches the first process would have drawn."""

    # after_fit before RecalibrateBatchNorm's (order -4), which recalibrates on one more pass: that
    # pass is seeded here first.
    order = -10

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = seed, rank

    def before_train(self):
        self._seed_pass(self.learn.epoch)

    def after_fit(self):
        self._seed_pass(self.learn.n_epoch)

    def _seed_pass(self, index: int) -> None:
        import numpy as np
        import torch

        if hasattr(self.learn.dls.train, "seed_next_pass"):
            self.learn.dls.train.seed_next_pass(self.seed, index)  # the same order on every rank
        # Crops and flips (drawn from torch's generator, in the workers from a seed it gives them)
        # differ between ranks, as each trains on other images.
        torch.manual_seed(int(np.random.SeedSequence([self.seed, index, self.rank]).generate_state(1)[0]))


class RanksAgreeOnPlan(Callback):
    """Before each training epoch, every rank checks that it holds the same plan as the others.

    An epoch's resolutions are a pure function of the schedule, the step and the run's length,
    so ranks that agree on those agree on every step's size. A rank that disagreed (another
    schedule, seed or number of steps) would train other sizes, or wait forever in a gradient
    all-reduce the others never reach: found here, before the epoch, rather than after the fit.
    """

    order = -6  # before TRDCallback hands the loader its plan

    def __init__(self, ranks: Ranks):
        self.ranks = ranks

    def before_train(self):
        if not self.ranks.distributed:
            return
        learn = self.learn
        plan = (learn.epoch, learn.n_epoch, len(learn.dl), learn.trd.schedule.describe())
        plans = gathered(plan, self.ranks)
        if any(other != plans[0] for other in plans):
            differ = [rank for rank, other in enumerate(plans) if other != plans[0]]
            raise RuntimeError(f"ranks {differ} hold another plan for epoch {learn.epoch + 1} than rank 0: {plans}")


class DataWaitTimer(Callback):
    """Times each training phase and its steps; with a loader that times its batches
    (``batch_wait_s``, as :class:`~trdcli.data.sized_loader.SizedBatchesDL` does), how long each
    step waited for its data. ``learn.data_wait_timer.last_phase`` holds the last phase's figures."""

    order = -20  # before_batch first: the step's time starts when its batch has arrived
    run_valid = False

    def __init__(self):
        self.last_phase: DataWait | None = None
        self._started_s = self._step_started_s = 0.0
        self._step_s: list[float] = []
        self._step_px: list[int] = []

    def before_train(self):
        self.last_phase = None
        self._step_s, self._step_px = [], []
        self._started_s = time.perf_counter()

    def before_batch(self):
        self._step_started_s = time.perf_counter()

    def after_batch(self):
        self._step_s.append(time.perf_counter() - self._step_started_s)
        self._step_px.append(int(self.learn.xb[0].shape[-1]))  # after any resize: the size it trained at

    def after_train(self):
        train_s = time.perf_counter() - self._started_s
        wait_s = list(getattr(self.learn.dl, "batch_wait_s", []))[: len(self._step_s)]
        if len(wait_s) == len(self._step_s):
            self.last_phase = measure_epoch(train_s, self._step_px, wait_s, self._step_s)


class LossDiverged(Exception):
    """The loss of a training step was NaN or infinite, or the run diverged (``train()`` says what is saved)."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where  # fastai rewrites a callback's exception message; this stays as said


# The loss reaches the host once per this many training steps (and at every epoch's last step): a
# read per step would make the host wait for each forward pass before queueing its backward.
LOSS_CHECK_EVERY = 16


class StopOnNonFiniteLoss(Callback):
    """Stop the fit once a training step's loss is NaN or infinite, or the run has diverged
    (:mod:`trdcli.core.divergence`: the smoothed loss far above its lowest and above chance for 20 steps).

    fastai's ``TerminateOnNaNCallback`` cancels the fit silently; this names the step, epoch and
    resolution of the first bad loss. The losses stay on the device and come to the host together
    every ``check_every`` steps and at each epoch's last step, before its backward pass: a bad step
    stops the run at most ``check_every - 1`` steps later, and always before the epoch's checkpoint,
    so what is saved never holds it. A distributed run adds one all-reduce of a single number per
    check, so all ranks stop together.
    """

    order = 5  # after_loss: once the loss exists, before backward

    def __init__(self, ranks: Ranks | None = None, peak_lr: float | None = None, check_every: int = LOSS_CHECK_EVERY):
        self.ranks = ranks or Ranks()
        self.peak_lr = peak_lr
        self.check_every = check_every

    def before_fit(self):
        classes = getattr(self.learn.dls, "c", None)  # DataLoaders of plain tensors have no class count
        self.watch = DivergenceWatch(max(int(classes or 0), 2))  # a fresh watch for every fit
        self._pending: list[tuple[Any, str]] = []  # (the loss on its device, where the step ran)

    def after_loss(self):
        if not self.learn.training:
            return
        self._pending.append((self.learn.loss.detach(), self._where()))
        if len(self._pending) >= self.check_every or self.learn.iter == self.learn.n_iter - 1:
            self._check()

    def _check(self) -> None:
        import torch

        losses = torch.stack([loss.float() for loss, _ in self._pending]).tolist()  # one transfer
        places = [where for _, where in self._pending]
        self._pending = []
        what = None
        for loss, where in zip(losses, places, strict=True):
            if not math.isfinite(loss):
                what = f"the training loss became {loss} at {where}"
            elif self.watch.update(loss):
                what = f"{self.watch.describe()} at {where}"
            if what:
                break
        # Every rank stops at the same step, whichever rank's loss went bad: a rank that
        # stopped alone would leave the others waiting in the next gradient all-reduce.
        if any_rank(what is not None, self.ranks):
            raise LossDiverged(what or "the training loss became nan or inf, or diverged, on another process")

    def _where(self) -> str:
        step, total_steps = fit_step(self.learn)
        px = int(self.learn.xb[0].shape[-1])
        rate = f", peak `lr` {self.peak_lr:g}" if self.peak_lr is not None else ""
        return f"step {step + 1:,} of {total_steps:,} (epoch {self.learn.epoch + 1}, {px} px{rate})"


# Under a launcher the ranks agree on a SIGTERM once per this many training steps (and at every
# epoch's last step): the agreement is an all-reduce and a read to the host, which a step-by-step
# check would add to every step. A preempted run still stops within this many steps, on every rank
# at the same step; one process checks its own flag after every step, which costs nothing.
SIGTERM_CHECK_EVERY = 16


class StopOnSigterm(Callback):
    """Raise :class:`~trdcli.run.faults.Preempted` once a SIGTERM has arrived (``signals``, filled by
    :func:`~trdcli.run.faults.sigterm_interrupts`): after the step it arrived in, or in a distributed
    run at the next agreement (every ``check_every`` steps and each epoch's last), on every rank at
    the same step, whichever ranks received it."""

    order = 90  # after_batch, once the step's other callbacks are done with it

    def __init__(self, signals: list[int], ranks: Ranks | None = None, check_every: int = SIGTERM_CHECK_EVERY):
        self.signals = signals
        self.ranks = ranks or Ranks()
        self.check_every = check_every
        self._since_check = 0  # every rank runs the same steps, so every rank agrees at the same one

    def after_batch(self):
        if not self.ranks.distributed:
            if self.signals:
                raise Preempted
            return
        self._since_check += 1
        if self._since_check < self.check_every and self.learn.iter != self.learn.n_iter - 1:
            return
        self._since_check = 0
        if any_rank(bool(self.signals), self.ranks):
            raise Preempted
