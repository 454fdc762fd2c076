"""The cost model against independent figures: torchvision's GMACs, hand counts, the paper's arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from trdcli.core.cost import (
    FlopsTable,
    ImageFlops,
    RunShape,
    count_image_flops,
    meta_copy,
    plan_compute,
    recalibration_images,
    summarize_compute,
    summarize_counts,
)
from trdcli.core.schedules import ConstantSchedule, TRDSchedule
from trdcli.run.flops_cache import FlopsCache, arch_flops

IMAGENET = RunShape(train_images=1_281_167, batch_size=256, epochs=90, full_px=224)

# torchvision's model cards, in multiply-adds (GMACs, which it labels "GFLOPS") at 224 px;
# FLOPs = 2 per multiply-add. The grouped and depthwise families check the backward fix below.
TORCHVISION_GMACS = {
    "resnet18": 1.814,
    "resnet50": 4.089,
    "resnext50_32x4d": 4.23,
    "mobilenet_v3_large": 0.22,
    "efficientnet_b0": 0.39,
    "regnet_y_400mf": 0.4,
    "convnext_tiny": 4.46,
}


@pytest.fixture(scope="module")
def resnet50_flops():
    return arch_flops("resnet50", 1000)


@pytest.mark.parametrize("arch", sorted(TORCHVISION_GMACS))
def test_forward_flops_match_torchvision_published_gmacs(arch):
    flops = arch_flops(arch, 1000).at(224)
    expected = 2 * TORCHVISION_GMACS[arch] * 1e9
    # 1%, or the rounding of the card's two decimals where that is coarser.
    assert flops.forward_flops == pytest.approx(expected, rel=max(0.01, 0.005 / TORCHVISION_GMACS[arch]))
    # Backward costs about twice the forward (input grads + weight grads), minus the first
    # layer's input gradient that nobody needs.
    assert 2.8 < flops.train_flops / flops.forward_flops < 3.0


@pytest.mark.parametrize("groups", [1, 4, 32])
def test_grouped_and_depthwise_backward_is_twice_the_forward(groups):
    # torch 2.14's FlopCounterMode counts the weight gradient of a grouped convolution `groups`
    # times too high; trd's formula must give the hand count.
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.Conv2d(32, 32, 3, padding=1, groups=groups, bias=False)
    )
    flops = count_image_flops(model, 16)
    first = 16 * 16 * 32 * 3 * 9
    second = 16 * 16 * 32 * (32 // groups) * 9
    assert flops.forward_flops == 2 * (first + second)
    # First layer: weight gradient only; second: input and weight gradients.
    assert flops.train_flops - flops.forward_flops == 2 * (first + 2 * second)


def test_hand_counted_conv_and_linear():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    flops = count_image_flops(model, 16)
    conv_macs = 16 * 16 * 8 * 3 * 3 * 3
    linear_macs = 8 * 16 * 16 * 10
    assert flops.forward_flops == 2 * (conv_macs + linear_macs)
    # Backward: weight grads for both layers, input grad only for the linear (the image needs none).
    assert flops.train_flops - flops.forward_flops == 2 * (conv_macs + 2 * linear_macs)


@pytest.mark.slow
def test_resnet50_at_112_costs_26_4_percent_not_25(resnet50_flops):
    ratio = resnet50_flops.at(112).train_flops / resnet50_flops.at(224).train_flops
    # docs/method.md, "Compute": layer4 is 4x4 at 112 px, not 3.5x3.5, so the saving is less than (1/2)^2.
    assert ratio == pytest.approx(0.264, abs=0.001)


@pytest.mark.parametrize(("until", "expected"), [(0.9, 0.338), (0.5, 0.632)])
def test_paper_settings_measured_compute_fraction(resnet50_flops, until, expected):
    summary = plan_compute(TRDSchedule(112, until=until), IMAGENET, resnet50_flops.at)
    assert summary.compute_fraction == pytest.approx(expected, abs=0.005)
    assert summary.compute_saved_frac == pytest.approx(1 - summary.compute_fraction)
    # Baseline = epochs * images (whole batches) * train FLOPs per image at 224.
    images = IMAGENET.epochs * (IMAGENET.train_images // 256) * 256
    assert summary.baseline_train_flops == images * resnet50_flops.at(224).train_flops


def idealised_flops(full_px: int, flops_at_full: ImageFlops):
    """Per-image cost that scales exactly with pixel count, ``(px / full_px) ** 2``: the paper's arithmetic."""

    def at(px: int) -> ImageFlops:
        ratio = (px / full_px) ** 2
        return ImageFlops(px, round(flops_at_full.forward_flops * ratio), round(flops_at_full.train_flops * ratio))

    return at


@pytest.mark.parametrize(("until", "expected"), [(0.9, 0.325), (0.5, 0.625)])
def test_paper_arithmetic_with_idealised_cost(resnet50_flops, until, expected):
    ideal = idealised_flops(224, resnet50_flops.at(224))
    # 90 epochs * 5004 steps = 450,360 steps: until * T is a whole number of steps, as in the paper.
    # The paper counts the training steps alone: no BatchNorm recalibration.
    summary = plan_compute(TRDSchedule(112, until=until), IMAGENET, ideal, bn_recalibrate=0)
    assert summary.compute_fraction == pytest.approx(expected, rel=1e-9)
    assert summary.recalibration_flops == 0


def test_default_recalibration_is_eight_full_batches_forward_and_counts_against_the_baseline():
    # docs/method.md, "Compute": a reduced run recalibrates BatchNorm on 8 batches at full size, forward
    # only, and that is compute the baseline does not spend.
    table = {64: ImageFlops(64, 10, 30), 32: ImageFlops(32, 3, 8)}
    shape = RunShape(train_images=100, batch_size=10, epochs=3, full_px=64)
    summary = plan_compute(TRDSchedule(32, until=0.5), shape, table.__getitem__)
    assert summary.recalibration_flops == 8 * 10 * 10
    # 30 steps of 10 images: 15 at 32 px, 15 at 64 px (until 0.5 of the steps).
    assert summary.train_flops == 150 * 8 + 150 * 30
    assert summary.baseline_train_flops == 300 * 30
    assert summary.run_flops == 150 * 8 + 150 * 30 + 800
    assert summary.compute_fraction == pytest.approx((1200 + 4500 + 800) / 9000)
    assert summary.train_compute_fraction == pytest.approx((1200 + 4500) / 9000)
    assert summary.compute_saved_frac == pytest.approx(1 - 6500 / 9000)
    # Nothing reduced, nothing to recalibrate; asked for explicitly, it is counted anyway.
    assert plan_compute(ConstantSchedule(), shape, table.__getitem__).recalibration_flops == 0
    assert plan_compute(ConstantSchedule(), shape, table.__getitem__, bn_recalibrate=2).recalibration_flops == 200


def test_recalibration_reads_one_epoch_at_most():
    # 95 images in batches of 10: 9 whole batches when the last is dropped, and the short
    # 10th batch of 5 when it is kept; more batches than an epoch has read the epoch once.
    assert recalibration_images(4, RunShape(95, 10, 1, 64)) == 40
    assert recalibration_images(50, RunShape(95, 10, 1, 64)) == 90
    assert recalibration_images(50, RunShape(95, 10, 1, 64, drop_last=False)) == 95
    assert recalibration_images(0, RunShape(95, 10, 1, 64)) == 0


def test_spread_reading_has_about_the_same_compute_as_the_window(resnet50_flops):
    window = plan_compute(TRDSchedule(112, until=0.9), IMAGENET, resnet50_flops.at)
    spread = plan_compute(TRDSchedule(112, until=1.0, prob=0.9, seed=0), IMAGENET, resnet50_flops.at)
    assert spread.compute_fraction == pytest.approx(window.compute_fraction, abs=0.002)


def test_summary_counts_by_hand():
    table = {224: ImageFlops(224, 10, 30), 112: ImageFlops(112, 3, 8)}
    summary = summarize_compute(
        [112, 112, 224, 112], [4, 4, 4, 2], 224, table.__getitem__, valid_images=5, valid_passes=2
    )
    assert summary.steps_by_px == {224: 1, 112: 3}
    assert summary.images_by_px == {224: 4, 112: 10}
    assert summary.train_flops == 4 * 30 + 10 * 8
    assert summary.baseline_train_flops == 14 * 30
    assert summary.valid_flops == 5 * 2 * 10
    assert summary.compute_fraction == pytest.approx(200 / 420)


def test_baseline_schedule_saves_nothing():
    table = {64: ImageFlops(64, 10, 30)}
    summary = plan_compute(ConstantSchedule(), RunShape(100, 10, 3, 64), table.__getitem__)
    assert summary.compute_saved_frac == 0.0
    assert summary.steps_by_px == {64: 30}


def test_run_shape_steps_and_errors():
    shape = RunShape(train_images=1000, batch_size=64, epochs=3, full_px=224)
    assert shape.steps_per_epoch == 15  # the last partial batch is dropped, as fastai does
    assert shape.total_steps == 45
    whole = RunShape(1000, 64, 3, 224, drop_last=False)  # 16 steps an epoch, the last of 40 images
    assert whole.images_at(np.arange(whole.total_steps)).sum() == 3000
    with pytest.raises(ValueError, match="batch size 64 is larger than the 10 training images"):
        RunShape(10, 64, 1, 224)
    with pytest.raises(ValueError, match="`epochs` must be a positive integer, got 0"):
        RunShape(100, 10, 0, 224)


def test_meta_copy_leaves_the_model_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    seen = []
    model.register_forward_hook(lambda *args: seen.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_image_flops(model, 32)
    assert seen == []  # the copy carries no hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.device.type == "meta" for p in meta_copy(model).parameters())


def test_disk_cache_is_reused_without_measuring(tmp_path):
    path = tmp_path / "flops.json"
    first = FlopsTable("tiny", 3, lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), cache=FlopsCache(path))
    measured = first.at(16)
    assert json.loads(path.read_text())["entries"]

    def refuse():
        raise AssertionError("should have come from the cache")

    second = FlopsTable("tiny", 3, refuse, cache=FlopsCache(path))
    assert second.at(16) == measured
    # Another resolution or class count is another key.
    with pytest.raises(AssertionError, match="from the cache"):
        FlopsTable("tiny", 4, refuse, cache=FlopsCache(path)).at(16)


def test_corrupt_or_unwritable_cache_is_not_an_error(tmp_path):
    path = tmp_path / "flops.json"
    path.write_text("{not json")
    table = FlopsTable("tiny", 3, lambda: nn.Sequential(nn.Conv2d(3, 4, 3)), cache=FlopsCache(path))
    assert table.at(8).forward_flops == 2 * 6 * 6 * 4 * 27
    # A file where the cache folder should be: mkdir fails, even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    unwritable = FlopsTable("tiny", 3, lambda: nn.Sequential(nn.Conv2d(3, 4, 3)), cache=FlopsCache(blocker / "f.json"))
    assert unwritable.at(8).forward_flops == 2 * 6 * 6 * 4 * 27


@pytest.mark.parametrize("name", ["trd-spread", "trd-window", "composer", "ffcv", "efficientnetv2", "baseline"])
def test_a_plan_counted_in_slices_is_the_per_step_plan_counted_by_hand(name, monkeypatch):
    import trdcli.core.cost as cost
    from trdcli.core.presets import get_preset

    # 7-step slices (10 steps an epoch) so that slices cut through epochs; 95 images at batch 10
    # without drop_last: each epoch's last batch has 5 images.
    monkeypatch.setattr(cost, "PLAN_SLICE_STEPS", 7)
    shape = RunShape(95, 10, 6, 160, drop_last=False)
    schedule = get_preset(name, seed=4)
    per_step = schedule.plan_px(60, 160, 10).tolist()
    images = [5 if t % 10 == 9 else 10 for t in range(60)]
    by_hand: dict[tuple[int, int], list[int]] = {}
    for t, px in enumerate(per_step):
        count = by_hand.setdefault((t // 10, px), [0, 0])
        count[0] += 1
        count[1] += images[t]
    groups = cost.plan_groups(schedule, shape)
    assert [(g.epoch, g.px, g.steps, g.images) for g in groups] == [
        (e, p, n, i) for (e, p), (n, i) in sorted(by_hand.items())
    ]
    # The profile: the mean px of 8 runs of steps, the i-th from step i * 60 // 8; every step when asked for more.
    buckets = [per_step[i * 60 // 8 : (i + 1) * 60 // 8] for i in range(8)]
    assert cost.plan_profile(schedule, shape, points=8) == pytest.approx([np.mean(b) for b in buckets])
    assert cost.plan_profile(schedule, shape, points=1000).tolist() == per_step


def test_a_plans_memory_does_not_grow_with_its_steps():
    import tracemalloc

    from trdcli.core.cost import plan_groups

    # 20 million steps: one int64 array of them is 160 MB; the plan holds 200 epochs x 2 groups.
    shape = RunShape(100_000 * 64, 64, 200, 224)
    tracemalloc.start()
    groups = plan_groups(TRDSchedule(112, until=1.0, prob=0.5, seed=1), shape)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert shape.total_steps == 20_000_000 and len(groups) == 400
    assert sum(g.steps for g in groups) == 20_000_000
    assert peak < 40e6  # a few slices' arrays of 262,144 steps


def test_the_ledger_is_one_share_of_a_named_baseline():
    from trdcli.core.ledger import baseline_cost, share_of_baseline

    # 10 images at 4 FLOPs is the baseline of 10 images at 1 FLOP (reduced) plus 0 recalibration: a quarter.
    assert share_of_baseline(10 * 1, baseline_cost(10, 4)) == 0.25
    assert share_of_baseline(0, baseline_cost(0, 4)) == 1.0  # nothing trained: no saving claimed
    summary = summarize_counts({64: 1, 32: 3}, {64: 8, 32: 24}, 64, lambda px: ImageFlops(px, px * px, 3 * px * px))
    assert summary.train_compute_fraction == share_of_baseline(8 * 3 * 64**2 + 24 * 3 * 32**2, 32 * 3 * 64**2)
