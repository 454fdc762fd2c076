"""TRDCallback in real fastai fits: what the model sees, what is recorded, what is planned."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from helpers import tensor_dls, tiny_cnn

from trdcli.callbacks.trd import TRDCallback
from trdcli.core.cost import FlopsTable, RunShape, plan_compute
from trdcli.core.schedules import ComposerSchedule, TRDSchedule


class InputSizes(Callback):
    """Records the spatial size the model's forward sees, split by training and validation."""

    def __init__(self):
        self.train, self.valid = [], []

    def before_fit(self):
        self._hook = self.learn.model.register_forward_pre_hook(self._record)

    def _record(self, module, args):
        (self.train if module.training else self.valid).append(args[0].shape[-1])

    def after_fit(self):
        self._hook.remove()


def make_learner(cbs, n_train=48, bs=8, px=64):
    return Learner(
        tensor_dls(n_train=n_train, bs=bs, px=px),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        metrics=accuracy,
        cbs=cbs,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule",
    [
        TRDSchedule(32, until=0.9),
        TRDSchedule(32, until=1.0, prob=0.5, seed=7),
        TRDSchedule(40, until=0.5, prob=0.7, seed=1),
        ComposerSchedule(),
    ],
    ids=repr,
)
def test_fit_sees_exactly_the_planned_resolutions_and_records_the_planned_compute(schedule):
    sizes = InputSizes()
    trd = TRDCallback(schedule=schedule)
    learn = make_learner([trd, sizes])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(4, 1e-2)
    shape = RunShape(train_images=48, batch_size=8, epochs=4, full_px=64)
    planned = schedule.plan_px(shape.total_steps, shape.full_px, shape.steps_per_epoch).tolist()
    # After the fit, BatchNorm recalibration runs the model forward on up to 8 full-resolution
    # batches (the 6 of an epoch here, whenever a step was reduced), with the model in evaluation
    # mode but for its BatchNorm layers: the hook on the whole model sees them as not training.
    recalibration = [64] * 6 if any(px != 64 for px in planned) else []
    assert sizes.train == planned
    assert [r.px for r in trd.records] == planned
    assert learn.recalibrate_bn.images == 8 * len(recalibration)
    assert set(sizes.valid) == {64}
    # Two validation batches per epoch, all at full size, then the recalibration batches.
    assert len(sizes.valid) == 4 * 2 + len(recalibration)

    flops = FlopsTable.for_model(learn.model, num_classes=3)
    plan = plan_compute(schedule, shape, flops.at)
    recorded = trd.summary()
    assert recorded.steps_by_px == plan.steps_by_px
    assert recorded.train_flops == plan.train_flops
    assert recorded.baseline_train_flops == plan.baseline_train_flops
    assert sum(r.train_flops for r in trd.records) == recorded.train_flops


@pytest.mark.slow
def test_notebook_api_with_vision_learner():
    from fastai.vision.learner import vision_learner
    from torchvision.models import resnet18

    trd = TRDCallback(low_res=32, until=0.9, prob=1.0)
    learn = vision_learner(
        tensor_dls(n_train=80, bs=8),
        resnet18,
        n_out=3,
        pretrained=False,
        loss_func=CrossEntropyLossFlat(),
        metrics=accuracy,
        cbs=trd,
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1)
    assert learn.trd is trd
    summary = trd.summary()
    assert summary.steps_by_px == {64: 1, 32: 9}  # 10 steps: 0.9 * 10 = 9 reduced
    flops = FlopsTable.for_model(learn.model, num_classes=3)
    steps = flops.at(64).train_flops + 9 * flops.at(32).train_flops
    baseline = 10 * flops.at(64).train_flops
    assert summary.train_compute_fraction == pytest.approx(steps / baseline, rel=1e-12)
    # Then BatchNorm recalibration: 8 batches of 8 forward at 64 px, paid by this run alone
    # (steps and baseline above are per image of a batch of 8: 64 images are 8 of those units).
    assert summary.compute_fraction == pytest.approx((steps + 8 * flops.at(64).forward_flops) / baseline, rel=1e-12)


def test_fine_tune_schedules_each_fit_on_its_own():
    sizes = InputSizes()
    trd = TRDCallback(low_res=32, until=0.5, prob=1.0)
    learn = make_learner([trd, sizes])
    learn.freeze = learn.unfreeze = lambda: None  # tiny_cnn has no body/head split to freeze
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(2, freeze_epochs=1)
    # Fit 0: 1 epoch of 6 steps, the first half reduced; fit 1: 2 epochs of 6 steps, likewise.
    # Each fit ends with BatchNorm recalibration: 6 more forward passes at 64 px, which the hook sees
    # as evaluation (only BatchNorm runs in training mode there), after each fit's validation batches.
    recalibration = [64] * 6
    assert sizes.train == [32] * 3 + [64] * 3 + [32] * 6 + [64] * 6
    assert sizes.valid == [64] * 2 + recalibration + [64] * 4 + recalibration
    assert [r.fit for r in trd.records] == [0] * 6 + [1] * 12
    assert trd.summary(fit=1).steps_by_px == {64: 6, 32: 6}


@pytest.mark.slow
def test_resumed_fit_continues_the_same_schedule():
    schedule = TRDSchedule(32, until=1.0, prob=0.5, seed=11)
    full = TRDCallback(schedule=schedule)
    with (learn := make_learner([full])).no_bar(), learn.no_logging():
        learn.fit(4)
    resumed = TRDCallback(schedule=schedule)
    with (learn := make_learner([resumed])).no_bar(), learn.no_logging():
        learn.fit(4, start_epoch=2)
    assert [r.step for r in resumed.records] == list(range(12, 24))
    assert [r.px for r in resumed.records] == [r.px for r in full.records][12:]


class StopAt(Callback):
    order = 100

    def __init__(self, step):
        self.step = step

    def after_batch(self):
        if self.training and self.learn.train_iter == self.step:
            raise KeyboardInterrupt


def test_summary_is_complete_after_an_interrupted_fit():
    trd = TRDCallback(low_res=32, until=0.9, prob=1.0)
    learn = make_learner([trd, StopAt(5)])
    with learn.no_bar(), learn.no_logging(), pytest.raises(KeyboardInterrupt):
        learn.fit(3)
    # StopAt runs after TRDCallback in after_batch, so the fifth step was recorded.
    assert len(trd.records) == 5
    summary = trd.summary()
    assert summary.steps == 5
    assert summary.steps_by_px == {64: 0, 32: 5}


def test_lr_find_is_left_at_full_resolution():
    sizes = InputSizes()
    trd = TRDCallback(low_res=32, until=0.9, prob=1.0)
    learn = make_learner([trd, sizes])
    with learn.no_bar(), learn.no_logging():
        learn.lr_find(num_it=10, show_plot=False)
    assert trd.records == []
    assert set(sizes.train) == {64}


def test_mixup_runs_on_the_reduced_batch():
    from fastai.callback.mixup import MixUp

    sizes = InputSizes()
    learn = make_learner([TRDCallback(low_res=32, until=1.0, prob=1.0, bn_recalibrate=0), MixUp(0.4), sizes])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert set(sizes.train) == {32}


def test_rectangular_batches_are_refused_clearly():
    class Stretch(Callback):
        order = -20

        def before_batch(self):
            self.learn.xb = (torch.nn.functional.interpolate(self.learn.xb[0], size=(64, 48)),)

    learn = make_learner([TRDCallback(low_res=32), Stretch()])
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match="square training images, got 64x48"):
        learn.fit(1)


def test_low_res_not_below_full_size_is_refused_at_the_first_batch():
    learn = make_learner([TRDCallback(low_res=64)])
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match="`low_res`=64 must be below .* 64 px"):
        learn.fit(1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs low_res"),
        ({"low_res": 32, "schedule": TRDSchedule(32)}, "not both"),
        ({"low_res": 32, "mode": "nearest"}, "mode must be one of"),
        ({"low_res": 32, "until": 2.0}, r"`until` must be in \(0, 1\], got 2.0"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TRDCallback(**kwargs)


def test_without_records_the_callback_keeps_counts_alone_and_the_same_account():
    # What trd train runs with: no record per step, the same groups and compute as a callback that keeps them.
    kept = TRDCallback(low_res=32, until=1.0, prob=0.5, seed=3)
    counted = TRDCallback(low_res=32, until=1.0, prob=0.5, seed=3, keep_records=False)
    for trd in (kept, counted):
        learn = Learner(tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[trd])
        with learn.no_bar(), learn.no_logging():
            learn.fit(2)
    assert counted.records == [] and len(kept.records) == 12
    assert counted.last_step == kept.records[-1]
    # Counted by hand from the kept records: (epoch, px) -> steps, 6 steps an epoch.
    by_hand = Counter((r.epoch, r.px) for r in kept.records)
    assert {(g.epoch, g.px): g.steps for g in counted.groups()} == by_hand
    assert counted.images_recorded_here() == 12 * 8
    assert counted.summary().train_flops == sum(r.train_flops for r in kept.records)


def test_validate_and_get_preds_between_fits_do_not_count_as_fits():
    # The README's notebook flow: fit, learn.validate(), fit again. fastai sends before_fit and
    # after_fit for validate() and get_preds() too, with no training pass between them.
    trd = TRDCallback(32, until=1.0, prob=1.0)
    learn = make_learner([trd])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
        learn.validate()
        learn.get_preds()
        learn.fit(1)
    assert trd.current_fit == 1
    assert sorted({g.fit for g in trd.groups()}) == [0, 1]
    steps_per_fit = 48 // 8
    assert trd.summary(fit=1).steps == steps_per_fit
    assert trd.summary(fit=0).steps == steps_per_fit


@pytest.mark.parametrize("form", ["trd_callbacks", "TRDCallback alone", "added after creation"])
def test_every_form_of_giving_trd_trains_counts_and_recalibrates_the_same(form):
    from trdcli.callbacks.batchnorm import RecalibrateBatchNorm
    from trdcli.callbacks.meter import ComputeMeter
    from trdcli.callbacks.trd import trd_callbacks

    torch.manual_seed(0)
    schedule = TRDSchedule(32, until=0.5)  # 6 steps a fit: the first 3 at 32 px, the rest at 64
    if form == "trd_callbacks":
        learn = make_learner(trd_callbacks(schedule=schedule))
    elif form == "TRDCallback alone":
        learn = make_learner(TRDCallback(schedule=schedule))
    else:
        learn = make_learner([])
        learn.add_cb(TRDCallback(schedule=schedule))
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    kinds = Counter(type(cb).__name__ for cb in learn.cbs)
    assert kinds["ComputeMeter"] == kinds["RecalibrateBatchNorm"] == kinds["TRDCallback"] == 1
    assert isinstance(learn.compute_meter, ComputeMeter) and isinstance(learn.recalibrate_bn, RecalibrateBatchNorm)
    assert [r.px for r in learn.compute_meter.records] == [32, 32, 32, 64, 64, 64]
    # Recalibration after the fit that reduced steps: 8 batches of 8 at most, of the 48 training images.
    assert learn.recalibrate_bn.images == 48
    summary = learn.compute_meter.summary()
    assert summary.recalibration_flops == 48 * FlopsTable.for_model(learn.model, 3).at(64).forward_flops
    # The callback's old names read the meter.
    assert learn.trd.summary() == summary and learn.trd.records == learn.compute_meter.records
