"""`trd compare --budget`: each family solved to spend the budget, checked by hand arithmetic; families that
cannot reach it reported; the command end to end, rerun, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.errors import ConfigError
from trdcli.core.schedules import TRDSchedule
from trdcli.plan.budget import FAMILIES, check_budgets, solve_budgets, solve_family
from trdcli.plan.compare import CompareConfig, Setting
from trdcli.run.config import TrainConfig
from trdcli.run.flops_cache import arch_flops

runner = CliRunner()
# 80 images of batch 8: 10 steps an epoch, 100 steps over 10 epochs; recalibration: 8 batches of 8.
IMAGES, CLASSES = 80, 3
RECIPE = TrainConfig(data=Path("."), arch="resnet18", epochs=10, size_px=64, batch_size=8)


@pytest.fixture(scope="module")
def flops():
    return arch_flops("resnet18", CLASSES)


def _by_hand(flops, reduced_share: float, low_px: int, epochs: int = 10, recalibrates: bool = True) -> float:
    # docs/method.md, "Compute": (1 - r) + r c(s)/c(S) of the training steps, plus recalibration's forward passes.
    full, low = flops.at(64), flops.at(low_px)
    train = epochs / 10 * ((1 - reduced_share) + reduced_share * low.train_flops / full.train_flops)
    recal = 8 * 8 * full.forward_flops / (100 * 8 * full.train_flops) if recalibrates else 0.0
    return train + recal


@pytest.mark.parametrize("budget", [0.4, 0.6])
def test_trd_spends_the_budget_linear_in_prob_by_hand(flops, budget):
    row = solve_family("trd", budget, RECIPE, IMAGES, CLASSES)
    prob = row.setting.prob
    assert row.setting == Setting("trd@" + f"{budget:g}", low_res=32, prob=prob)
    spent = _by_hand(flops, prob, 32)  # in expectation, prob of the steps are reduced
    assert spent == pytest.approx(row.planned_fraction, rel=1e-9)
    assert budget * 0.98 <= spent <= budget
    # The least reduction that fits: 0.001 less prob would spend more than the budget.
    assert _by_hand(flops, prob - 0.001, 32) > budget


@pytest.mark.parametrize("budget", [0.35, 0.6])
def test_fixed_low_resolution_is_the_largest_size_that_fits_by_hand(flops, budget):
    row = solve_family("fixed", budget, RECIPE, IMAGES, CLASSES)
    px = row.setting.low_res
    assert row.setting.until == 1.0 and row.setting.prob == 1.0  # every step at px
    assert _by_hand(flops, 1.0, px) <= budget < _by_hand(flops, 1.0, px + 1)
    assert row.planned_fraction == pytest.approx(_by_hand(flops, 1.0, px), rel=1e-9)
    assert row.parameter == f"{px} px throughout"
    # Sizes move the cost in steps (the feature maps halve at every stride): a row more than 2% below says so.
    assert (row.note == "") == (row.planned_fraction >= 0.98 * budget)


def test_window_and_fewer_epochs_by_hand(flops):
    row = solve_family("window", 0.5, RECIPE, IMAGES, CLASSES)
    until = row.setting.until
    # A window reduces the steps whose progress is below until: ceil(100 until) of the 100.
    reduced = int(np.ceil(100 * until - 1e-9)) / 100
    assert row.planned_fraction == pytest.approx(_by_hand(flops, reduced, 32), rel=1e-9) and row.planned_fraction <= 0.5
    assert _by_hand(flops, reduced - 0.01, 32) > 0.5  # one step fewer reduced would not fit
    epochs = solve_family("fewer-epochs", 0.55, RECIPE, IMAGES, CLASSES)
    assert epochs.setting == Setting("baseline-5ep", epochs=5) and epochs.planned_fraction == 0.5
    assert epochs.note == "spends 50.0%: the nearest setting below 55%"  # 6 epochs would spend 60%


@pytest.mark.slow
def test_every_family_spends_within_two_percent_or_says_why():
    recipe = TrainConfig(data=Path("."), arch="resnet18", epochs=10, size_px=96, batch_size=8)
    for row in solve_budgets((0.45, 0.7), tuple(FAMILIES), recipe, 160, CLASSES):
        assert row.planned_fraction <= row.budget_frac * (1 + 1e-9) or row.setting is None
        if row.setting is not None:
            # The fractions themselves are checked by hand family by family above; here, the rule
            # that a row more than 2% below its budget says so.
            spent = row.planned_fraction
            assert spent >= row.budget_frac * 0.98 or row.note.startswith(f"spends {spent:.1%}")
        else:
            assert row.planned_fraction > row.budget_frac and row.note.startswith("cannot reach")


def test_a_family_that_cannot_reach_the_budget_is_reported_not_stretched(flops):
    # Composer's first half at its smallest scale (32 px of 64), a ramp, then 20% at full: about 0.5 at least.
    row = solve_family("composer", 0.3, RECIPE, IMAGES, CLASSES)
    assert row.setting is None and row.planned_fraction > 0.3
    cheapest = f"{row.planned_fraction:.1%}"
    assert row.note == f"cannot reach 30%: its cheapest setting (initial_scale 0.5 (32 px)) spends {cheapest}"
    with pytest.raises(ConfigError, match=r"`budget` 0.05 is below what any family can reach here"):
        solve_budgets((0.05,), tuple(FAMILIES), RECIPE, IMAGES, CLASSES)


def test_a_falling_chance_by_hand():
    schedule = TRDSchedule(32, until=1.0, prob=1.0, prob_end=0.2, seed=3)
    chance = schedule.reduction_chance(np.arange(100), 100)
    assert chance[0] == 1.0 and chance[50] == pytest.approx(0.6) and chance[99] == pytest.approx(1 - 0.8 * 0.99)
    window = TRDSchedule(32, until=0.5, prob=0.8, prob_end=0.0).reduction_chance(np.arange(100), 100)
    assert window[25] == pytest.approx(0.4) and not window[50:].any()
    plan = schedule.plan_px(100_000, 64)
    # Expected share reduced: the mean of the line from 1 to 0.2, 0.6; binomial sd at 1e5 steps is 0.0016.
    assert abs((plan == 32).mean() - 0.6) < 0.01
    early, late = (plan[:50_000] == 32).mean(), (plan[50_000:] == 32).mean()
    assert early == pytest.approx(0.8, abs=0.01) and late == pytest.approx(0.4, abs=0.01)
    assert "prob_end" not in TRDSchedule(32, prob=0.5).params()  # a constant chance is recorded as always


@pytest.mark.parametrize(
    ("budgets", "message"),
    [((1.0,), r"in \(0, 1\), got 1.0"), ((0.0,), r"in \(0, 1\), got 0.0"), ((0.4, 0.4), "must be distinct")],
)
def test_bad_budgets(budgets, message):
    with pytest.raises(ConfigError, match=message):
        check_budgets(budgets)


def test_family_needs_a_budget_and_a_known_name():
    with pytest.raises(ConfigError, match="give a `budget` with it"):
        CompareConfig(RECIPE, (Setting("baseline"),), families=("trd",))
    with pytest.raises(ConfigError, match="unknown `family` nope; choose from: trd, window"):
        CompareConfig(RECIPE, (Setting("baseline"),), budgets=(0.5,), families=("nope",))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("budget") / "data", n_train=8, n_valid=2, px=48)


def budget_args(folder, out, *extra):
    args = ["compare", str(folder), "--size", "64", "--batch-size", "8", "--epochs", "4", "--seeds", "0,"]
    args += ["--workers", "0", "--budget", "0.7", "--family", "trd", "--family", "fixed"]
    return [*args, "--out", str(out), *extra]


@pytest.mark.slow
def test_compare_budget_end_to_end_and_a_rerun_trains_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cli.stdout, "width", 220)
    out = tmp_path / "cmp"
    result = runner.invoke(cli.app, [*budget_args(folder, out, "--setting", "trd-window"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # The given setting (and its equal-compute baseline), the full baseline added, one setting per family.
    # trd-window: 11 of 12 steps at 32 px (~0.3) and recalibration on 3 batches (~0.08) of 4 epochs: 2 epochs.
    labels = ["baseline", "trd-window", "baseline-2ep", "trd@0.7", "fixed@0.7"]
    assert [r["setting"] for r in payload["settings"]] == labels
    assert [(b["budget_frac"], b["family"]) for b in payload["budgets"]] == [(0.7, "trd"), (0.7, "fixed")]
    for row in payload["budgets"]:
        run = json.loads((out / row["result"]["setting"].replace("@", "_") / "seed0" / "run.json").read_text())
        spent = (run["train_flops"] + run["bn_recalibration_flops"]) / payload["reference_train_flops"]
        assert row["result"]["recipe_compute_fraction"] == pytest.approx(spent)
        assert {k: v for k, v in run["schedule"].items() if k != "seed"} == row["schedule"]
    fixed = payload["budgets"][1]
    # 24 images, 3 steps an epoch, every one at the solved size: the run spent exactly what was planned.
    assert fixed["result"]["recipe_compute_fraction"] == pytest.approx(fixed["planned_compute_fraction"])
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("run.json")}
    table = runner.invoke(cli.app, budget_args(folder, out, "--setting", "trd-window"))
    assert table.exit_code == 0, table.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("run.json")} == stamps  # resumed: nothing retrained
    assert "at equal compute" in table.stdout and f"prob {payload['budgets'][0]['schedule']['prob']:g}" in table.stdout
    assert "full size, every epoch" in table.stdout  # the budget table carries the baseline it is measured against


@pytest.mark.slow
def test_a_finished_run_of_another_setting_is_not_summarised_as_this_one(folder, tmp_path):
    out = tmp_path / "cmp"
    first = runner.invoke(cli.app, budget_args(folder, out, "--family", "fewer-epochs"))
    assert first.exit_code == 0, first.output
    # The same labels under the same --out, but 3 epochs: baseline/seed0 holds a 4-epoch run.
    changed = runner.invoke(cli.app, [*budget_args(folder, out), "--epochs", "3"])
    assert changed.exit_code == 1
    assert "holds a finished run of another setting" in changed.output and "Traceback" not in changed.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "1.5"], "in (0, 1), got 1.5"),
        (["--budget", "0.7"], "must be distinct"),
        (["--family", "nope"], "unknown --family nope"),
        (["--budget", "0.05"], "--budget 0.05 is below what any family can reach here"),
    ],
)
def test_bad_budget_options_are_one_line_before_training(folder, tmp_path, extra, message):
    out = tmp_path / "cmp"
    result = runner.invoke(cli.app, [*budget_args(folder, out), *extra])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_every_solved_setting_can_be_asked_for_by_hand():
    from trdcli.cli.values import parse_setting
    from trdcli.core.presets import build_schedule

    assert parse_setting("c:preset=composer,initial_scale=0.3") == Setting("c", preset="composer", initial_scale=0.3)
    falling = parse_setting("f:low_res=32,until=1.0,prob=1.0,prob_end=0.2")
    assert falling.schedule(5) == TRDSchedule(32, until=1.0, prob=1.0, prob_end=0.2, seed=5)
    assert build_schedule("composer", initial_scale=0.3).params()["initial_scale"] == 0.3
    with pytest.raises(ConfigError, match="`initial_scale` is the composer preset's"):
        build_schedule(low_res=32, initial_scale=0.3)
    with pytest.raises(ConfigError, match=r"`prob_end` must be in \[0, 1\], got 1.5"):
        build_schedule(low_res=32, prob_end=1.5)


class _Captured(Exception):
    pass


def test_compare_passes_every_option(folder, tmp_path, monkeypatch):
    import trdcli.plan.compare

    seen = []

    def capture(config, observer=None):
        seen.append(config)
        raise _Captured

    monkeypatch.setattr(trdcli.plan.compare, "run_compare", capture)
    args = ["compare", str(folder), "--arch", "resnet34", "--epochs", "3", "--size", "128", "--batch-size", "16"]
    args += ["--lr", "0.01", "--valid-pct", "0.3", "--workers", "0", "--device", "cpu", "--min-scale", "0.5"]
    args += ["--seeds", "4,7", "--out", str(tmp_path / "c"), "--no-equal-compute", "--setting", "trd-window"]
    args += ["--budget", "0.4", "--budget", "0.6", "--family", "trd", "--family", "ffcv", "--log-to", "tensorboard"]
    result = runner.invoke(cli.app, args)
    assert isinstance(result.exception, _Captured), result.output
    recipe = TrainConfig(
        data=folder, arch="resnet34", epochs=3, size_px=128, batch_size=16, lr=0.01, valid_pct=0.3, workers=0,
        device="cpu", min_scale=0.5, log_to=("tensorboard",),
    )  # fmt: skip
    window = (Setting("trd-window", preset="trd-window"),)
    expected = CompareConfig(recipe, window, (4, 7), tmp_path / "c", False, (0.4, 0.6), ("trd", "ffcv"))
    assert seen == [expected]
    # With budgets and no --setting, the families bring trd's default: the baseline is the one setting given.
    runner.invoke(cli.app, ["compare", str(folder), "--budget", "0.5"])
    assert seen[-1].settings == (Setting("baseline"),) and seen[-1].budgets == (0.5,) and seen[-1].families is None


@pytest.mark.slow
def test_the_solved_parameters_are_flags_of_train_and_estimate_cost():
    base = ["estimate-cost", "--arch", "resnet18", "--images", "1000", "--json"]
    composer = runner.invoke(cli.app, [*base, "--preset", "composer", "--initial-scale", "0.3"])
    assert composer.exit_code == 0, composer.output
    assert json.loads(composer.stdout)["schedule"]["initial_scale"] == 0.3
    falling = runner.invoke(cli.app, [*base, "--low-res", "112", "--prob", "1", "--prob-end", "0.2"])
    assert (
        json.loads(falling.stdout)["schedule"] | {"seed": 0}
        == TRDSchedule(112, until=1.0, prob=1.0, prob_end=0.2).describe()
    )


@pytest.mark.parametrize("budget", [0.4, 0.6])
def test_estimate_cost_and_compare_give_the_same_setting_for_the_same_budget(budget):
    args = ["estimate-cost", "--arch", "resnet18", "--images", "80", "--classes", "3", "--size", "64"]
    args += ["--epochs", "10", "--batch-size", "8", "--low-res", "32", "--budget", str(budget), "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    (best,) = [o for o in json.loads(result.stdout)["budget"]["options"] if o["low_px"] == 32]
    assert best["spread_prob"] == solve_family("trd", budget, RECIPE, IMAGES, CLASSES).setting.prob
    assert best["until"] == solve_family("window", budget, RECIPE, IMAGES, CLASSES).setting.until
