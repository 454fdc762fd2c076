"""Runs that survive what clusters do to them: SIGTERM stops like Ctrl-C, a diverged loss stops with
where it happened, and both resume from the last saved epoch on the same schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from fastai.losses import CrossEntropyLossFlat
from helpers import epoch_counts, make_image_folder, ran

from trdcli.core.errors import TrainingDiverged
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.rundir import PROGRESS_FILE
from trdcli.run.train import train

SCHEDULE = TRDSchedule(32, until=1.0, prob=0.5, seed=2)


class DivergesAtStep(CrossEntropyLossFlat):
    """Cross-entropy that turns NaN at one training step, as an exploding run's loss does."""

    def __init__(self, step: int, **kwargs):
        super().__init__(**kwargs)
        self.diverge_at, self.training_calls = step, 0

    def __call__(self, inp, targ, **kwargs):
        loss = super().__call__(inp, targ, **kwargs)
        if torch.is_grad_enabled():  # a training step, not validation
            self.training_calls += 1
            if self.training_calls == self.diverge_at:
                return loss * float("nan")
        return loss


@pytest.mark.slow
def test_a_diverged_loss_stops_with_where_and_keeps_the_checkpoint_to_resume_at_a_lower_rate(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)  # 24 images, batch 8: 3 steps/epoch
    config = TrainConfig(
        data=data, epochs=3, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run", schedule=SCHEDULE
    )
    monkeypatch.setattr("fastai.losses.CrossEntropyLossFlat", lambda **kw: DivergesAtStep(5, **kw))
    with pytest.raises(TrainingDiverged) as info:
        train(config)
    planned = SCHEDULE.plan_px(9, 64).tolist()
    message = str(info.value)
    # The peak rate is named: the first thing to lower (the default 3e-3 here).
    where = f"step 5 of 9 (epoch 2, {planned[4]} px, peak `lr` 0.003)"
    assert message.startswith(f"the training loss became nan at {where};")
    run = tmp_path / "run"
    assert message.endswith(f"epochs 1-1 are saved: add `resume` {run} and a lower `lr` to continue from there")
    assert json.loads((tmp_path / "run" / PROGRESS_FILE).read_text())["epochs_done"] == 1
    monkeypatch.undo()
    resumed = train(TrainConfig(**{**config.__dict__, "resume": tmp_path / "run", "lr": 1e-3}))
    assert ran(resumed) == epoch_counts(planned, 3)
    assert "resuming at `lr` 0.001 instead of the run's 0.003" in resumed.warnings
    assert resumed.lr == 1e-3


@pytest.mark.slow
def test_sigterm_saves_the_last_epoch_says_how_to_resume_and_the_resume_keeps_the_schedule(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    run = tmp_path / "run"
    args = [str(data), "--size", "64", "--batch-size", "8", "--epochs", "30", "--workers", "1", "--low-res", "32"]
    args += ["--until", "1.0", "--prob", "0.5", "--seed", "2", "--out", str(run)]
    process = subprocess.Popen(
        [sys.executable, "-m", "trdcli", "train", *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (run / PROGRESS_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    saved = json.loads((run / PROGRESS_FILE).read_text())["epochs_done"]
    assert 1 <= saved < 30
    one_line = " ".join(stderr.split())
    assert f"stopped by SIGTERM (preempted); epochs 1-{saved} are saved in {run}" in one_line
    assert "Traceback" not in stderr
    config = TrainConfig(
        data=data, epochs=30, size_px=64, batch_size=8, workers=0, resume=run, schedule=SCHEDULE, seed=2
    )
    resumed = train(config)
    assert ran(resumed) == epoch_counts(SCHEDULE.plan_px(90, 64), 3)
    assert [row["epoch"] for row in resumed.history] == list(range(30))


def test_the_loss_reaches_the_host_once_per_check_not_every_step(tmp_path, monkeypatch):
    # trd's own callbacks on the training path (the schedule, data-wait timing, the loss check, the
    # progress display) over a real fit of 40 steps: every host read of a tensor counted while training.
    from fastai.callback.core import Callback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from helpers import tensor_dls, tiny_cnn

    from trdcli.callbacks.trd import TRDCallback
    from trdcli.run.callbacks import LOSS_CHECK_EVERY, DataWaitTimer, FitState, ReportProgress, StopOnNonFiniteLoss
    from trdcli.run.observer import TrainObserver, WarningLog

    reads, counting, depth = [], [False], [0]
    for name in ("__float__", "item", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name):
            if counting[0] and not depth[0]:  # fastai's tensors pass a read on to torch's: count it once
                reads.append(_name)
            depth[0] += 1
            try:
                return _real(self, *args)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(torch.Tensor, name, counted)

    class Count(Callback):
        order = -100  # first in, last out: around every other callback's training events

        def before_train(self):
            counting[0] = True

        def after_train(self):
            counting[0] = False

    observer = TrainObserver()
    state = FitState(tmp_path, observer, {}, 1e-3, WarningLog(observer))
    cbs = [TRDCallback(low_res=32, bn_recalibrate=0), DataWaitTimer(), StopOnNonFiniteLoss(), ReportProgress(state)]
    learn = Learner(
        tensor_dls(n_train=320, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[*cbs, Count()]
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert LOSS_CHECK_EVERY == 16
    # 40 steps: the loss check reads steps 1-16, 17-32 and 33-40 (the epoch's end) in one transfer each;
    # the display reads the smoothed loss at steps 0, 16, 32 and the last. Not 40 of either. (The one
    # item() is torch's DataLoader drawing its base seed on the CPU as the pass starts.)
    assert sorted(reads) == sorted(["tolist"] * 3 + ["__float__"] * 4 + ["item"]), reads


def test_a_bad_loss_mid_epoch_stops_within_one_check():
    from fastai.learner import Learner
    from helpers import tensor_dls, tiny_cnn

    from trdcli.callbacks.trd import TRDCallback
    from trdcli.run.callbacks import LOSS_CHECK_EVERY, LossDiverged, StopOnNonFiniteLoss

    trd = TRDCallback(low_res=32, bn_recalibrate=0)
    learn = Learner(
        tensor_dls(n_train=320, bs=8, px=64), tiny_cnn(), loss_func=DivergesAtStep(3), cbs=[trd, StopOnNonFiniteLoss()]
    )
    with learn.no_bar(), learn.no_logging(), pytest.raises(LossDiverged) as info:
        learn.fit(1)
    assert info.value.where.startswith("the training loss became nan at step 3 of 40 (epoch 1,")
    # Found at the first check: after step 16's loss, before its backward; 15 steps finished.
    assert len(trd.records) == LOSS_CHECK_EVERY - 1
