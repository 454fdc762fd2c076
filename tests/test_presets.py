"""Every preset behind one interface: properties, compute against each source's own definition, real fits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from helpers import tensor_dls, tiny_cnn
from typer.testing import CliRunner

from trdcli.callbacks.batchnorm import recalibrate_batchnorm
from trdcli.callbacks.regularisation import StageRegularisation
from trdcli.callbacks.trd import TRDCallback
from trdcli.cli import app as cli
from trdcli.core.cost import RunShape, plan_compute
from trdcli.core.errors import ConfigError
from trdcli.core.presets import PRESETS, build_schedule, get_preset
from trdcli.core.schedules import MIN_PX, ResolutionSchedule, StagedSchedule
from trdcli.run.flops_cache import arch_flops, default_cache

# ResNet-50 on ImageNet, 90 epochs at batch 256: the reference run of `trd presets`.
SHAPE = RunShape(1_281_167, 256, 90, 224)
SMALL = RunShape(6400, 64, 10, 224)  # 100 steps per epoch, 1000 steps


@pytest.fixture(scope="module")
def flops():
    return arch_flops("resnet50", 1000, cache=default_cache())


# The multiple each source rounds its sizes to (sizes other than the full one).
MULTIPLE = {"composer": 4, "ffcv": 32}


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("full_px", [224, 160, 64])
def test_preset_properties(name, full_px):
    schedule = get_preset(name, seed=1)
    plan = schedule.plan_px(SMALL.total_steps, full_px, SMALL.steps_per_epoch)
    assert plan.max() <= full_px
    assert plan.min() >= MIN_PX
    reduced = plan[plan != full_px]
    if name in MULTIPLE:
        interior = (
            reduced[reduced != reduced.min()] if name == "ffcv" else reduced
        )  # ffcv starts at its low_res as given
        assert (interior % MULTIPLE[name] == 0).all(), sorted(set(interior.tolist()))
    # Every preset but the spread reading (random over the whole run, by definition) ends at full size.
    if name != "trd-spread":
        assert plan[-1] == full_px
    if name not in ("baseline", "trd-spread", "trd-alternate"):
        assert plan[0] < full_px
    if name != "baseline":
        assert (plan < full_px).any()
    again = get_preset(name, seed=1).plan_px(SMALL.total_steps, full_px, SMALL.steps_per_epoch)
    assert (plan == again).all()


def test_ramps_are_monotone_and_non_trd_presets_ignore_the_seed():
    for name in ("composer", "ffcv", "efficientnetv2", "fastbook", "fixres", "trd-window", "trd-half"):
        a = get_preset(name, seed=0).plan_px(1000, 224, 100)
        b = get_preset(name, seed=99).plan_px(1000, 224, 100)
        assert (np.diff(a) >= 0).all(), name
        assert (a == b).all(), name


def composer_px(step: int, total: int, full: int) -> int:
    """Composer ProgressiveResizing.apply with its defaults, written out from the source."""
    initial_scale, finetune_fraction, delay_fraction, size_increment = 0.5, 0.2, 0.5, 4
    elapsed = step / total
    if elapsed >= delay_fraction:
        frac = min((elapsed - delay_fraction) / (1 - finetune_fraction - delay_fraction), 1)
    else:
        frac = 0.0
    scale = initial_scale + (1 - initial_scale) * frac
    pinned = round(full * scale / size_increment) * size_increment
    return full if pinned / full >= 1 else pinned  # resize_batch short-circuits at scale >= 1


# ffcv-imagenet's rn50_configs: epochs -> (start_ramp, end_ramp).
FFCV_CONFIGS = {16: (11, 13), 32: (23, 27), 56: (41, 48), 88: (65, 76)}


@pytest.mark.parametrize(("epochs", "ramp"), sorted(FFCV_CONFIGS.items()))
def test_ffcv_ramp_epochs_reproduce_every_published_config(epochs, ramp):
    assert get_preset("ffcv").ramp_epochs(epochs) == ramp


@pytest.mark.parametrize("epochs", [2, 3, 5, 7, 16, 88])
def test_ffcv_ends_at_full_resolution_even_in_short_runs(epochs):
    plan = get_preset("ffcv").plan_px(epochs * 10, 128, 10)
    assert plan[-1] == 128


def ffcv_px(epoch: int, epochs: int, full: int) -> int:
    """ffcv-imagenet get_resolution with its rn50 configs' ramp: epochs 65 -> 76 of 88, in whole epochs."""
    min_res, max_res = round(full * 160 / 224), full
    start_ramp, end_ramp = min(int(65 / 88 * epochs), epochs - 2), min(int(76 / 88 * epochs), epochs - 1)
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    interp = np.interp([epoch], [start_ramp, end_ramp], [min_res, max_res])
    return int(np.round(interp[0] / 32)) * 32


def effnetv2_px(step: int, total: int, full: int) -> int:
    """google/automl efficientnetv2 main.py: stage i runs to int((i+1)/4 * T) at int(ibase + (S-ibase)*(i+1)/4)."""
    ibase = full / 2
    for stage in range(4):
        ratio = (stage + 1) / 4
        if step < int(ratio * total):
            return int(ibase + (full - ibase) * ratio)
    raise AssertionError("unreachable")


def window(low_frac: float, until: float):
    def px(step, total, full):
        return round(full * low_frac) if step / total < until else full

    return px


INDEPENDENT = {
    "composer": lambda t, shape: composer_px(t, shape.total_steps, shape.full_px),
    "ffcv": lambda t, shape: ffcv_px(t // shape.steps_per_epoch, shape.epochs, shape.full_px),
    "efficientnetv2": lambda t, shape: effnetv2_px(t, shape.total_steps, shape.full_px),
    "fastbook": lambda t, shape: window(128 / 224, 4 / 10)(t, shape.total_steps, shape.full_px),
    "fixres": lambda t, shape: window(128 / 224, 30 / 40)(t, shape.total_steps, shape.full_px),
    "trd-window": lambda t, shape: window(0.5, 0.9)(t, shape.total_steps, shape.full_px),
    "trd-half": lambda t, shape: window(0.5, 0.5)(t, shape.total_steps, shape.full_px),
    "baseline": lambda t, shape: shape.full_px,
}


# Composer's definition is a per-step loop over 112,590 steps: over 10 s here.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "composer" else n for n in sorted(INDEPENDENT)]
)
def test_compute_fraction_matches_the_source_definition(name, flops):
    shape = RunShape(1_281_167, 1024, 90, 224)  # 1,251 steps per epoch keeps the step loop quick
    px = [INDEPENDENT[name](t, shape) for t in range(shape.total_steps)]
    per_step = shape.batch_size
    expected = sum(per_step * flops.at(p).train_flops for p in px) / (len(px) * per_step * flops.at(224).train_flops)
    # The sources count training steps; trd adds BatchNorm recalibration on top (8 batches forward at 224).
    summary = plan_compute(get_preset(name), shape, flops.at)
    assert summary.train_compute_fraction == pytest.approx(expected, rel=1e-12)
    recalibrated = 8 * 1024 * flops.at(224).forward_flops if name != "baseline" else 0
    assert summary.recalibration_flops == recalibrated
    assert get_preset(name).plan_px(shape.total_steps, shape.full_px, shape.steps_per_epoch).tolist() == px


@pytest.mark.parametrize(("name", "share"), [("trd-spread", 0.9), ("trd-alternate", 0.9 * 0.5)])
def test_random_presets_reduce_the_expected_share(name, share, flops):
    summary = plan_compute(get_preset(name), SHAPE, flops.at)
    ratio = flops.at(112).train_flops / flops.at(224).train_flops
    expected = 1 - share * (1 - ratio)
    # A binomial share over 450,360 steps: 4 standard deviations.
    sd = math.sqrt(share * (1 - share) / SHAPE.total_steps) * (1 - ratio)
    assert abs(summary.train_compute_fraction - expected) < 4 * sd


def test_overrides_and_unknown_names():
    assert get_preset("trd-window", low_res=96).low_px(224) == 96
    assert build_schedule("fastbook", until=0.5).until == 0.5
    assert build_schedule("trd-alternate", prob=0.25, seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown `preset` 'nope'; choose one of: trd-window, trd-alternate"):
        get_preset("nope")
    with pytest.raises(ValueError, match=r"`until` cannot override preset efficientnetv2 \(options it takes: none\)"):
        build_schedule("efficientnetv2", until=0.5)


@pytest.mark.slow
def test_presets_command_lists_every_preset_as_json():
    result = CliRunner().invoke(cli.app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == list(PRESETS)
    by_name = {row["name"]: row for row in rows}
    assert by_name["trd-window"]["compute_fraction"] == pytest.approx(0.338, abs=0.005)
    assert by_name["trd-half"]["compute_fraction"] == pytest.approx(0.632, abs=0.005)
    assert by_name["baseline"]["compute_fraction"] == 1.0
    assert all(row["source"] and row["description"] for row in rows)
    table = CliRunner().invoke(cli.app, ["presets"])
    assert table.exit_code == 0 and "composer" in table.stdout and "efficientnetv2" in table.stdout


class InputSizes(Callback):
    order = 50

    def __init__(self):
        self.train, self.dropout = [], []

    def before_batch(self):
        if self.training:
            self.train.append(self.learn.xb[0].shape[-1])
            self.dropout.append(next(m.p for m in self.learn.model.modules() if isinstance(m, nn.Dropout)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["composer", "efficientnetv2"])
def test_real_fit_with_non_trd_presets_records_the_schedule(name):
    schedule = get_preset(name)
    sizes = InputSizes()
    regularise = [StageRegularisation(schedule)] if schedule.has_regularisation else []
    learn = Learner(
        tensor_dls(n_train=80, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(schedule=schedule), *regularise, sizes],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(4, 1e-3)
    planned = schedule.plan_px(40, 64, 10).tolist()
    assert sizes.train == planned
    assert [r.px for r in learn.trd.records] == planned
    if name == "efficientnetv2":
        # Dropout rises per stage (0.1 -> 0.4 in four stages) and is restored after the fit.
        assert sizes.dropout == [pytest.approx(p) for p in np.repeat([0.1, 0.2, 0.3, 0.4], 10)]
        assert next(m.p for m in learn.model.modules() if isinstance(m, nn.Dropout)) == 0.1
        assert learn.loss_func.__class__.__name__ == "CrossEntropyLossFlat"  # mixup's wrapper removed


def test_a_schedule_with_regularisation_warns_when_nothing_applies_it():
    learn = Learner(
        tensor_dls(n_train=16, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(schedule=get_preset("efficientnetv2"))],
    )
    warned = pytest.warns(UserWarning, match="add trdcli.callbacks.regularisation.StageRegularisation")
    with warned, learn.no_bar(), learn.no_logging():
        learn.fit(1)


def test_mixup_stage_mixes_inputs_and_targets():
    schedule = StagedSchedule(stages=1, mixup_alpha=(0.4, 0.4), dropout=(0.0, 0.0))
    trd = TRDCallback(schedule=schedule)
    regularise = StageRegularisation(schedule)
    checked, unmixed = [], []

    class Keep(Callback):  # between TRDCallback (-5) and the mixup (-4): the batch as it was
        order = -4.5

        def before_batch(self):
            unmixed[:] = [self.learn.xb[0].clone(), self.learn.yb[0].clone()]

    class Check(Callback):
        order = 0

        def before_batch(self):
            if self.training:
                other_targets, lam = regularise.yb1[0], regularise.lam
                checked.append(True)
                assert ((lam >= 0.5) & (lam <= 1)).all() and (lam < 1).any()
                # Each mixed image is lam of its own image and 1 - lam of another's, whose label it borrows.
                x, y, mixed = *unmixed, self.learn.xb[0]
                for i in range(len(lam)):
                    blend = [lam[i] * x[i] + (1 - lam[i]) * x[j] for j in range(len(x))]
                    partners = [j for j, b in enumerate(blend) if torch.allclose(mixed[i], b, atol=1e-5)]
                    assert partners and any(y[j] == other_targets[i] for j in partners)
                assert not torch.allclose(mixed, x)
                assert other_targets.shape == self.learn.yb[0].shape
                pred = torch.randn(len(lam), 3)
                expected = torch.lerp(
                    nn.functional.cross_entropy(pred, other_targets, reduction="none"),
                    nn.functional.cross_entropy(pred, self.learn.yb[0], reduction="none"),
                    lam,
                ).mean()
                assert torch.allclose(self.learn.loss_func(pred, self.learn.yb[0]), expected, atol=1e-6)

    learn = Learner(
        tensor_dls(n_train=32, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[trd, Keep(), regularise, Check()],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert len(checked) == 4


def test_bn_recalibration_changes_the_running_statistics_and_evaluation_uses_them():
    torch.manual_seed(0)
    model = tiny_cnn()
    batches = [(torch.randn(8, 3, 64, 64) * 2 + 1,) for _ in range(3)]
    bn = model[1]
    before_mean = bn.running_mean.clone()
    model.eval()
    probe = torch.randn(4, 3, 64, 64) * 2 + 1
    out_before = model(probe)
    images = recalibrate_batchnorm(model, batches, max_batches=2)
    assert images == 16 and not model.training
    # Independently: the first BN's running mean is the mean of conv1's output over the two batches used.
    with torch.no_grad():
        expected = torch.cat([model[0](b[0]) for b in batches[:2]]).mean(dim=(0, 2, 3))
    assert not torch.allclose(bn.running_mean, before_mean)
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.1  # restored
    assert not torch.allclose(model(probe), out_before)


# Run shapes with whole epochs, short and long: the per-epoch ffcv ramp rounds epochs down.
TAIL_SHAPES = [(5, 10), (16, 7), (88, 3), (30, 1)]


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize(("epochs", "steps_per_epoch"), TAIL_SHAPES)
def test_every_preset_is_at_full_size_from_its_full_tail_start(name, epochs, steps_per_epoch):
    schedule, full_px = get_preset(name), 224
    total = epochs * steps_per_epoch
    px = schedule.plan_px(total, full_px, steps_per_epoch=steps_per_epoch)
    in_tail = np.arange(total) / total >= schedule.full_tail_start_frac
    assert (px[in_tail] == full_px).all(), (name, schedule.full_tail_start_frac)


def test_the_ramps_report_the_tail_their_sources_give():
    # Composer: full size for the last finetune_frac (0.2); FFCV: from epoch 76 of 88;
    # EfficientNetV2: the last of 4 stages.
    assert get_preset("composer").full_tail_start_frac == pytest.approx(0.8)
    assert get_preset("ffcv").full_tail_start_frac == pytest.approx(76 / 88)
    assert get_preset("efficientnetv2").full_tail_start_frac == pytest.approx(0.75)
    px = get_preset("ffcv").plan_px(88 * 2, 224, steps_per_epoch=2)
    # Epoch 65 of 88 is the ramp's start, at the reduced size; the rounding to 32 px may reach full
    # size a little before epoch 76, from which it is guaranteed.
    assert px[65 * 2] < 224 and (px[76 * 2 :] == 224).all()


def test_tail_lr_is_accepted_for_a_ramp_with_a_full_tail():
    from trdcli.run.config import TrainConfig

    config = TrainConfig(data=".", schedule=get_preset("composer"), tail_lr_frac=0.3)
    assert config.lr_curve.tail_start_frac == pytest.approx(0.8)


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_a_plan_in_slices_and_each_step_asked_alone_are_the_sources_sizes(name):
    # The slices plan_groups reads and the single steps the callback asks, against each source's own rule.
    schedule, shape = get_preset(name), RunShape(800, 8, 10, 160)  # 100 steps per epoch
    total, per_epoch = shape.total_steps, shape.steps_per_epoch
    source = [INDEPENDENT[name](t, shape) for t in range(total)]
    cuts = [0, 1, 99, 100, 333, 334, 750, 999, 1000]
    slices = [schedule.plan_range(a, b, total, 160, per_epoch) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert np.concatenate(slices).tolist() == source
    assert [schedule.resolution_px(t, total, 160, per_epoch) for t in cuts[:-1]] == [source[t] for t in cuts[:-1]]
    assert schedule.plan_range(500, 500, total, 160, per_epoch).size == 0
    with pytest.raises(ConfigError, match="need 0 <= start <= stop <= total_steps=1000"):
        schedule.plan_range(10, 1001, total, 160, per_epoch)


def test_a_schedule_written_step_by_step_still_plans_and_trains():
    # Schedules written for trd before sizes_px defined resolution_px alone: their plan asks it step by step.
    class EveryThird(ResolutionSchedule):
        name = "every-third"

        def resolution_px(self, step, total_steps, full_px, steps_per_epoch=None):
            return full_px // 2 if step % 3 == 0 else full_px

        def params(self):
            return {}

    assert EveryThird().plan_px(7, 64).tolist() == [32, 64, 64, 32, 64, 64, 32]
    assert EveryThird().plan_range(3, 5, 7, 64).tolist() == [32, 64]
