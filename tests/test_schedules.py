"""TRD schedule semantics (docs/method.md, "The three parameters"), checked against independent arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from trdcli.core.schedules import ComposerSchedule, FFCVSchedule, TRDSchedule, step_uniforms


def _window_steps(until: float, total_steps: int) -> int:
    """Steps whose progress t/T is below `until`, counted in exact decimal arithmetic."""
    bound = Fraction(repr(until))
    return sum(1 for t in range(total_steps) if Fraction(t, total_steps) < bound)


@pytest.mark.parametrize("total_steps", [1, 7, 10, 100, 333, 1000, 4999])
@pytest.mark.parametrize("until", [0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])
def test_window_with_prob_one_is_exactly_the_steps_before_until(until, total_steps):
    schedule = TRDSchedule(112, until=until)
    plan = schedule.plan_px(total_steps, 224)
    reduced = np.flatnonzero(plan == 112)
    n_window = _window_steps(until, total_steps)
    # prob=1: the reduced steps are exactly 0 .. n_window-1, the rest are full resolution.
    assert reduced.tolist() == list(range(n_window))
    assert (plan[n_window:] == 224).all()


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("prob", [0.1, 0.5, 0.9])
def test_no_reduced_step_at_or_after_until(seed, prob):
    total_steps, until = 2000, 0.6
    plan = TRDSchedule(96, until=until, prob=prob, seed=seed).plan_px(total_steps, 224)
    first_full_only = _window_steps(until, total_steps)
    assert first_full_only == 1200
    assert (plan[first_full_only:] == 224).all()
    assert set(np.unique(plan)) <= {96, 224}


@pytest.mark.parametrize("prob", [0.05, 0.3, 0.5, 0.9])
def test_reduced_share_inside_window_converges_to_prob(prob):
    total_steps, until = 20_000, 0.5
    window = _window_steps(until, total_steps)
    shares = []
    for seed in range(30):
        plan = TRDSchedule(112, until=until, prob=prob, seed=seed).plan_px(total_steps, 224)
        shares.append(float(np.mean(plan[:window] == 112)))
    # Each share is a mean of 10,000 Bernoulli(prob) draws: sd = sqrt(p(1-p)/n).
    sd = math.sqrt(prob * (1 - prob) / window)
    assert all(abs(s - prob) < 5 * sd for s in shares), shares
    assert abs(np.mean(shares) - prob) < 5 * sd / math.sqrt(len(shares))


def test_prob_zero_never_reduces_and_prob_one_always_does():
    assert (TRDSchedule(112, until=1.0, prob=0.0).plan_px(500, 224) == 224).all()
    assert (TRDSchedule(112, until=1.0, prob=1.0).plan_px(500, 224) == 112).all()


def test_same_seed_same_sequence_other_seeds_differ():
    plans = [TRDSchedule(112, until=1.0, prob=0.5, seed=s).plan_px(1000, 224) for s in range(10)]
    again = [TRDSchedule(112, until=1.0, prob=0.5, seed=s).plan_px(1000, 224) for s in range(10)]
    assert all((a == b).all() for a, b in zip(plans, again, strict=True))
    distinct = {p.tobytes() for p in plans}
    assert len(distinct) == len(plans)


def test_step_decision_is_pure_in_step_and_independent_of_run_length_inside_window():
    # The draw for a step depends on (seed, step) only, so asking in any order, one step at a
    # time (as the callback does, and as a resumed run does), gives the plan's answer.
    schedule = TRDSchedule(112, until=1.0, prob=0.37, seed=3)
    plan = schedule.plan_px(400, 224)
    order = np.random.default_rng(0).permutation(400)
    assert all(schedule.resolution_px(int(t), 400, 224) == plan[t] for t in order)
    assert (schedule.plan_px(800, 224)[:400] == plan).all()


def test_step_uniforms_are_uniform_and_reproducible():
    u = step_uniforms(123, np.arange(100_000))
    assert ((u >= 0) & (u < 1)).all()
    assert abs(u.mean() - 0.5) < 0.005
    # Uniform histogram: each of 10 bins within 5% of 10,000.
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert (np.abs(counts - 10_000) < 500).all()
    assert step_uniforms(123, 77)[0] == u[77]
    assert step_uniforms(124, 77)[0] != u[77]


def test_low_scale_resolves_against_full_size():
    schedule = TRDSchedule(low_scale=0.5, until=0.9)
    assert schedule.low_px(224) == 112
    assert schedule.low_px(64) == 32
    assert schedule.resolution_px(0, 10, 160) == 80


def test_progress_is_step_over_total():
    # Step 9 of 10 is at progress 0.9: reduced in a window to 0.91, at full size in one to 0.9.
    assert TRDSchedule(32, until=0.91).resolution_px(9, 10, 64) == 32
    assert TRDSchedule(32, until=0.9).resolution_px(9, 10, 64) == 64
    with pytest.raises(ValueError, match="step must be"):
        TRDSchedule(32, until=0.9).resolution_px(10, 10, 64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low_res": 0}, "`low_res` must be a positive integer.*0"),
        ({"low_res": -5}, "`low_res` must be a positive integer.*-5"),
        ({"low_res": 112.5}, "`low_res` must be a positive integer.*112.5"),
        ({"low_res": 16}, "`low_res`=16 px is too small"),
        ({"low_res": 112, "until": 0.0}, r"`until` must be in \(0, 1\].*0.0"),
        ({"low_res": 112, "until": 1.5}, r"`until` must be in \(0, 1\].*1.5"),
        ({"low_res": 112, "until": float("nan")}, "`until` must be"),
        ({"low_res": 112, "prob": -0.1}, r"`prob` must be in \[0, 1\].*-0.1"),
        ({"low_res": 112, "prob": 1.01}, r"`prob` must be in \[0, 1\].*1.01"),
        ({"low_res": 112, "seed": 1.5}, "`seed` must be an integer.*1.5"),
        ({}, "exactly one of low_res"),
        ({"low_res": 112, "low_scale": 0.5}, "exactly one of low_res"),
        ({"low_scale": 1.0}, r"low_scale must be a fraction in \(0, 1\).*1.0"),
    ],
)
def test_bad_parameters_raise_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TRDSchedule(**kwargs)


def test_low_res_must_be_below_full_resolution():
    schedule = TRDSchedule(112)
    with pytest.raises(ValueError, match="`low_res`=112 must be below the full training resolution of 112 px"):
        schedule.plan_px(10, 112)
    with pytest.raises(ValueError, match="`low_res`=112 must be below the full training resolution of 96 px"):
        schedule.resolution_px(0, 10, 96)


@pytest.mark.parametrize(("until", "prob"), [(None, None), (0.9, None), (None, 0.5), (0.7, 0.3)])
def test_one_trd_reading_for_every_way_of_asking(until, prob):
    # Expected values from trd's reading (docs/method.md), written out: neither given is trd's default
    # (until 1.0, prob 0.9); until alone a window (prob 1); prob alone the whole run (until 1).
    expected_until = {None: 1.0}.get(until, until)
    expected_prob = (0.9 if until is None else 1.0) if prob is None else prob
    from trdcli.callbacks.trd import TRDCallback
    from trdcli.core.presets import build_schedule
    from trdcli.plan.setting import Setting

    asked = [
        TRDSchedule(112, until=until, prob=prob, seed=3),
        TRDCallback(low_res=112, until=until, prob=prob, seed=3).schedule,
        build_schedule(None, 112, until, prob, 3),
        Setting("s", low_res=112, until=until, prob=prob).schedule(3),
    ]
    for schedule in asked:
        assert (schedule.until, schedule.prob, schedule.seed) == (expected_until, expected_prob, 3)
    assert all(s.plan_px(500, 224).tolist() == asked[0].plan_px(500, 224).tolist() for s in asked)


def test_the_command_line_reads_trd_options_as_the_api_does():
    import json

    from typer.testing import CliRunner

    from trdcli.cli.app import app

    def schedule_of(*flags):
        args = ["estimate-cost", "--dataset", "imagenet", "--arch", "resnet50", "--low-res", "112", *flags, "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["schedule"]

    assert (schedule_of()["until_frac"], schedule_of()["prob"]) == (1.0, 0.9)
    assert (schedule_of("--until", "0.9")["until_frac"], schedule_of("--until", "0.9")["prob"]) == (0.9, 1.0)


def composer_source_px(step, total, full, initial_scale, delay_frac, finetune_frac, size_increment):
    """Composer's ProgressiveResizing.apply, written out from its source for any parameters."""
    elapsed = step / total
    ramp = 1 - finetune_frac - delay_frac
    frac = 0.0 if elapsed < delay_frac else (1.0 if ramp <= 0 else min((elapsed - delay_frac) / ramp, 1))
    scale = initial_scale + (1 - initial_scale) * frac
    pinned = round(full * scale / size_increment) * size_increment
    return full if pinned >= full else pinned


def ffcv_source_px(epoch, epochs, low, full, multiple=32):
    """ffcv-imagenet's get_resolution (np.interp, rounded to the multiple) with trd's whole-epoch ramp."""
    start, end = min(int(65 / 88 * epochs), epochs - 2), min(int(76 / 88 * epochs), epochs - 1)
    if epoch <= start:
        return low
    if epoch >= end:
        return full
    return int(np.round(np.interp([epoch], [start, end], [low, full])[0] / multiple)) * multiple


@pytest.mark.parametrize(
    ("schedule", "source"),
    [
        (ComposerSchedule(), lambda t, T, E, full: composer_source_px(t, T, full, 0.5, 0.5, 0.2, 4)),
        (ComposerSchedule(0.6, 0.3, 0.3, 8), lambda t, T, E, full: composer_source_px(t, T, full, 0.6, 0.3, 0.3, 8)),
        (ComposerSchedule(0.5, 0.6, 0.4), lambda t, T, E, full: composer_source_px(t, T, full, 0.5, 0.6, 0.4, 4)),
        (FFCVSchedule(128), lambda t, T, E, full: ffcv_source_px(t // (T // E), E, 128, full)),
    ],
    ids=["composer", "composer-0.6", "composer-no-ramp", "ffcv"],
)
@pytest.mark.parametrize(("total", "per_epoch", "full"), [(450_360, 5004, 224), (777, 7, 176), (90, 9, 224)])
def test_a_whole_plan_is_the_sources_rule_at_every_length(schedule, source, total, per_epoch, full):
    # ImageNet's length and odd short ones, against the rule written out from each source.
    steps = range(0, total, max(1, total // 2000))  # every step of the short runs, 2,000 of ImageNet's
    plan = schedule.plan_px(total, full, per_epoch)
    assert len(plan) == total
    assert [int(plan[t]) for t in steps] == [source(t, total, total // per_epoch, full) for t in steps]
