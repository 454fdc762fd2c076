"""The learning-rate curve: fastai's one-cycle exactly, and the full-resolution tail's own annealing."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from helpers import InterruptAfter, make_image_folder, ran, tensor_dls, tiny_cnn

from trdcli.core.errors import ConfigError, RunDirError, TrainingInterrupted
from trdcli.core.lr_schedule import OneCycle
from trdcli.core.schedules import ConstantSchedule, TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.observer import TrainObserver

POSITIONS = np.linspace(0, 0.999, 97)


def test_without_a_tail_it_is_fit_one_cycle():
    from fastai.callback.schedule import combined_cos

    # fit_one_cycle's own curves (fastai/callback/schedule.py), with its defaults; fastai works in float32.
    lr, mom = combined_cos(0.25, 1 / 25, 1.0, 1e-5), combined_cos(0.25, 0.95, 0.85, 0.95)
    cycle = OneCycle()
    assert max(abs(lr(p) - cycle.lr_frac_at(p)) for p in POSITIONS) < 1e-6
    assert max(abs(mom(p) - cycle.mom_at(p)) for p in POSITIONS) < 1e-6
    # The window reading's tail under plain one-cycle: (1 + cos(pi * 0.65 / 0.75)) / 2 of the peak at 0.9.
    assert cycle.lr_frac_at(0.9) == pytest.approx((1 + math.cos(math.pi * 0.65 / 0.75)) / 2, abs=1e-5)
    assert cycle.lr_frac_at(0.9) < 0.05


def test_the_tail_anneals_from_its_own_rate():
    cycle = OneCycle(tail_start_frac=0.8, tail_lr_frac=0.3)
    plain = OneCycle()
    # Before the tail, the whole one-cycle squeezed into [0, 0.8): the peak at 0.25 * 0.8 = 0.2.
    for p in POSITIONS[POSITIONS < 0.8]:
        assert cycle.lr_frac_at(p) == pytest.approx(plain.lr_frac_at(p / 0.8))
        assert cycle.mom_at(p) == pytest.approx(plain.mom_at(p / 0.8))
    assert cycle.lr_frac_at(0.2) == pytest.approx(1.0)
    # The tail: 0.3 at its start, half way (0.3 + 1e-5) / 2 at 0.9, 1e-5 at the end; momentum 0.85 -> 0.95.
    assert cycle.lr_frac_at(0.8) == pytest.approx(0.3)
    assert cycle.lr_frac_at(0.9) == pytest.approx((0.3 + 1e-5) / 2)
    assert cycle.lr_frac_at(1.0) == pytest.approx(1e-5)
    assert cycle.mom_at(0.8) == pytest.approx(0.85) and cycle.mom_at(0.9) == pytest.approx(0.90)
    tail = [cycle.lr_frac_at(p) for p in POSITIONS[POSITIONS >= 0.8]]
    assert tail == sorted(tail, reverse=True)


def test_a_tail_rate_needs_a_tail():
    with pytest.raises(ConfigError, match=r"`tail_lr` must be a fraction of the peak rate in \(0, 1\], got 0"):
        OneCycle(0.9, 0.0)
    with pytest.raises(ConfigError, match="`tail_lr` needs a full-resolution tail"):
        OneCycle(1.0, 0.3)
    with pytest.raises(ConfigError, match="`tail_lr` needs a full-resolution tail"):
        TrainConfig(data=".", size_px=64, schedule=TRDSchedule(32, until=1.0, prob=0.9), tail_lr_frac=0.3)
    with pytest.raises(ConfigError, match="`tail_lr` needs a full-resolution tail"):
        TrainConfig(data=".", size_px=64, schedule=ConstantSchedule(), tail_lr_frac=0.3)
    window = TrainConfig(data=".", size_px=64, schedule=TRDSchedule(32, until=0.75), tail_lr_frac=0.3)
    assert window.lr_curve == OneCycle(0.75, 0.3)


def test_a_fit_follows_the_curve_and_the_tail_is_at_full_resolution():
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    from trdcli import TRDCallback
    from trdcli.run.callbacks import lr_scheduler

    dls = tensor_dls(n_train=48, bs=8)  # 6 steps per epoch, 12 in all; the tail is steps 9-11
    trd = TRDCallback(schedule=TRDSchedule(32, until=0.75), bn_recalibrate=0)
    learn = Learner(dls, tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[trd])
    learn.fit(2, 0.01, cbs=lr_scheduler(OneCycle(0.75, 0.2), 0.01))
    lrs = list(learn.recorder.lrs)
    assert [r.px for r in trd.records] == [32] * 9 + [64] * 3
    # Step t runs at progress t / 12. The tail restarts at 0.2 x the peak; step 10 is a third of
    # the way down its half cosine, where (1 + cos(2 pi / 3)) / 2 = 1/4 of the drop is done.
    assert lrs[9] == pytest.approx(0.01 * 0.2)
    assert lrs[10] == pytest.approx(0.01 * (0.2 - (0.2 - 1e-5) / 4))
    # The compressed cycle: step 2 (progress 1/6) is 2/9 of the way, past its peak at 0.25 * 0.75.
    assert lrs[2] == pytest.approx(0.01 * OneCycle().lr_frac_at((2 / 12) / 0.75), rel=1e-5)
    # The cycle's last step (8/9 of it, in its annealing: 5% of the peak) is below the tail's restart.
    falling = (1 + math.cos(math.pi * (8 / 9 - 0.25) / 0.75)) / 2
    assert lrs[8] == pytest.approx(0.01 * (1e-5 + falling * (1 - 1e-5)))
    assert lrs[8] < lrs[9]


@pytest.mark.slow
def test_a_run_records_its_tail_rate_and_resumes_only_with_it(tmp_path):
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(
        data=data, epochs=2, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / "run",
        schedule=TRDSchedule(32, until=0.5), tail_lr_frac=0.3,
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=3))
    plain = replace(config, tail_lr_frac=None, resume=tmp_path / "run")
    with pytest.raises(RunDirError, match="the run used tail_lr_frac=0.3, this command has None"):
        train(plain)
    result = train(replace(config, resume=tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["config"]["tail_lr_frac"] == 0.3
    # 24 images, 3 steps an epoch: the first half of 6 reduced, the tail at full size.
    assert ran(result) == [(0, 32, 3), (1, 64, 3)]


def test_a_tail_at_a_stalled_rate_is_warned_about():
    from trdcli.run.observer import WarningLog
    from trdcli.run.train import _warn_if_tail_stalls

    def warnings(**options):
        log = WarningLog(TrainObserver())
        _warn_if_tail_stalls(TrainConfig(data=".", size_px=64, **options), log)
        return log.messages

    # (1 + cos(pi * 0.65 / 0.75)) / 2 = 4.3% of the peak at 0.9: warned; at 0.8, 16.5%: not.
    (message,) = warnings(schedule=TRDSchedule(32, until=0.9))
    assert "starts at 4.3% of the peak" in message and "`tail_lr`" in message
    assert warnings(schedule=TRDSchedule(32, until=0.8)) == []
    assert warnings(schedule=TRDSchedule(32, until=0.9), tail_lr_frac=0.3) == []
    assert warnings(schedule=TRDSchedule(32, until=1.0, prob=0.9)) == []
    assert warnings() == []
