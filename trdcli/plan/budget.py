"""Every schedule family at the same compute: the settings ``trd compare --budget F`` trains.

For a budget ``F`` (a fraction of the full baseline's compute over the recipe's epochs), each
family's one free parameter is solved so that the family spends ``F``: the least reduction
that fits, never more compute than ``F``. The compute is the one a ``trd compare`` row shows
(training steps and BatchNorm recalibration's forward passes, :func:`~trdcli.plan.setting.planned_fraction`),
in expectation over the draws for the random ones. A family whose parameter moves in steps
(whole epochs, sizes rounded to a multiple) lands on the nearest setting below ``F`` and its
row says how far below; a family whose cheapest setting still spends more than ``F`` is
reported as unable to reach it, never stretched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from trdcli.core.errors import ConfigError
from trdcli.core.schedules import MIN_PX
from trdcli.plan.setting import Setting, planned_fraction
from trdcli.plan.solve import grid, nearest_below_note, solve_within
from trdcli.run.config import TrainConfig

# The families, each with the one parameter solved for it (docs/cli.md has the table): trd's default
# recipe (prob), the paper's window (until), TRD with a falling chance (its line), Composer
# (initial_scale), FFCV (lowest px), fastbook (switch point), one fixed lower size (px), and the
# baseline with fewer epochs.
FAMILIES = ("trd", "window", "falling", "composer", "ffcv", "fastbook", "fixed", "fewer-epochs")


@dataclass(frozen=True)
class BudgetRow:
    """One family at one budget: the setting solved for it, or why there is none."""

    budget_frac: float
    family: str
    setting: Setting | None  # None: the family cannot reach the budget
    parameter: str  # the solved value, or the cheapest one tried
    planned_fraction: float  # its compute (expected over draws); for no setting, the cheapest setting's
    note: str = ""


def check_budgets(budgets: Sequence[float]) -> tuple[float, ...]:
    """The budgets, each a fraction in (0, 1), distinct."""
    for budget in budgets:
        if not (isinstance(budget, float | int) and 0 < budget < 1):
            raise ConfigError(f"`budget` must be a fraction of the baseline's compute in (0, 1), got {budget!r}")
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"`budget` values must be distinct, got {list(budgets)}")
    return tuple(float(b) for b in budgets)


def check_families(names: Sequence[str] | None) -> tuple[str, ...]:
    """Family names as given (every family when None), each known."""
    if names is None:
        return tuple(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ConfigError(f"unknown `family` {', '.join(unknown) or '(none)'}; choose from: {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class _Candidates:
    """A family's parameter values in order of rising compute, and the setting each makes."""

    values: list
    make: Callable[[object], Setting]
    show: Callable[[object], str]


def _falling(share: float) -> tuple[float, float]:
    # One number, the expected share of reduced steps, covers the family: the chance falls from 1 to
    # 2*share-1 over the run; below half, from 2*share to 0.
    return (1.0, round(2 * share - 1, 3)) if share >= 0.5 else (round(2 * share, 3), 0.0)


def _candidates(family: str, recipe: TrainConfig, label: str) -> _Candidates:
    full, half = recipe.size_px, recipe.size_px // 2
    if family == "trd":
        return _Candidates(grid(1.0, 0.0), lambda p: Setting(label, low_res=half, prob=p), lambda p: f"prob {p:g}")
    if family == "window":
        return _Candidates(grid(1.0, 0.001), lambda u: Setting(label, low_res=half, until=u), lambda u: f"until {u:g}")
    if family == "falling":
        return _Candidates(
            grid(1.0, 0.0),
            lambda r: Setting(label, low_res=half, until=1.0, prob=_falling(r)[0], prob_end=_falling(r)[1]),
            lambda r: "chance {:g} -> {:g}".format(*_falling(r)),
        )
    if family == "composer":
        smallest = np.ceil(MIN_PX / full * 1000) / 1000
        return _Candidates(
            grid(float(smallest), 1.0),
            lambda s: Setting(label, preset="composer", initial_scale=s),
            lambda s: f"initial_scale {s:g} ({int(round(full * s / 4)) * 4} px)",
        )
    if family == "ffcv":
        return _Candidates(
            list(range(MIN_PX, full)), lambda px: Setting(label, preset="ffcv", low_res=px), lambda px: f"from {px} px"
        )
    if family == "fastbook":
        low = int(round(full * 128 / 224))
        return _Candidates(
            grid(1.0, 0.001),
            lambda u: Setting(label, preset="fastbook", until=u),
            lambda u: f"{low} px until {u:g}",
        )
    if family == "fixed":
        return _Candidates(
            list(range(MIN_PX, full)),
            lambda px: Setting(label, low_res=px, until=1.0, prob=1.0),
            lambda px: f"{px} px throughout",
        )
    if family == "fewer-epochs":
        return _Candidates(
            list(range(1, recipe.epochs)),
            lambda e: Setting(f"baseline-{e}ep", epochs=e),
            lambda e: f"{e} of {recipe.epochs} epochs",
        )
    raise ConfigError(f"unknown `family` {family!r}; choose from: {', '.join(FAMILIES)}")


def budget_label(family: str, budget_frac: float) -> str:
    return f"{family}@{budget_frac:g}"


def solve_family(
    family: str, budget_frac: float, recipe: TrainConfig, train_images: int, num_classes: int
) -> BudgetRow:
    """The family's setting with the most compute that does not exceed ``budget_frac``
    (:func:`~trdcli.plan.solve.solve_within` on its parameter's grid, in order of rising compute)."""
    candidates = _candidates(family, recipe, budget_label(family, budget_frac))
    def planned(value) -> float:
        return planned_fraction(candidates.make(value), recipe, train_images, num_classes, seed=None)

    solved = solve_within(candidates.values, planned, budget_frac)
    if solved.value is None:
        shown = candidates.show(candidates.values[0]) if candidates.values else "-"
        note = f"cannot reach {budget_frac:.0%}: its cheapest setting ({shown}) spends {solved.spent_frac:.1%}"
        return BudgetRow(budget_frac, family, None, shown, solved.spent_frac, note)
    note = nearest_below_note(solved.spent_frac, budget_frac)
    setting, shown = candidates.make(solved.value), candidates.show(solved.value)
    return BudgetRow(budget_frac, family, setting, shown, solved.spent_frac, note)


def solve_budgets(
    budgets: Sequence[float], families: Sequence[str], recipe: TrainConfig, train_images: int, num_classes: int
) -> list[BudgetRow]:
    """Every family at every budget; raises when some budget is below what every family can reach."""
    rows = [solve_family(f, b, recipe, train_images, num_classes) for b in budgets for f in families]
    for budget in budgets:
        at_budget = [r for r in rows if r.budget_frac == budget]
        if all(r.setting is None for r in at_budget):
            cheapest = min(r.planned_fraction for r in at_budget)
            raise ConfigError(
                f"`budget` {budget:g} is below what any family can reach here (the cheapest spends {cheapest:.1%})"
            )
    return rows
