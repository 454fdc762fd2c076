"""The one budget solver: what a schedule costs over a run, and the setting that spends the most within a budget.

``trd estimate-cost --budget`` and ``trd compare --budget`` both answer "which setting spends this
share of the baseline?" with these two functions, so for the same recipe and budget they give the
same setting. A random schedule is costed in expectation (each step's chance of being reduced
times its cost), which is what a budget over seeds means; one rule decides among a parameter's
values: the one with the most compute (the least reduction) that does not exceed the budget,
found by bisection over values in order of rising compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from trdcli.core.cost import RunShape, groups_reduce, plan_groups
from trdcli.core.schedules import ResolutionSchedule, TRDSchedule

# Rounding slack when a cost is compared with its budget (a fraction computed two ways).
BUDGET_SLACK_FRAC = 1e-9
# A solved setting may spend this much less than its budget before it says so (sizes and epochs move
# in steps, so the nearest setting can land below).
BUDGET_TOLERANCE_FRAC = 0.02


def schedule_cost(
    schedule: ResolutionSchedule, shape: RunShape, cost_of_px: Callable[[int], float], expected: bool = True
) -> tuple[float, bool]:
    """(the run's training cost, sum over steps of images x ``cost_of_px(px)``; whether a step is reduced).

    ``expected``: a random TRD schedule in expectation over its draws; otherwise its seed's plan.
    """
    full = float(cost_of_px(shape.full_px))
    if expected and isinstance(schedule, TRDSchedule) and schedule.is_random:
        low = float(cost_of_px(schedule.low_px(shape.full_px)))
        cost, reduced = 0.0, False
        for start, stop in shape.slices():  # slice by slice: memory that does not grow with the run
            steps = np.arange(start, stop, dtype=np.int64)
            chance = schedule.reduction_chance(steps, shape.total_steps)
            cost += float((shape.images_at(steps) * (chance * low + (1 - chance) * full)).sum())
            reduced = reduced or bool(chance.any())
        return cost, reduced
    groups = plan_groups(schedule, shape)
    costs = {px: float(cost_of_px(px)) for px in {g.px for g in groups}}
    return float(sum(costs[g.px] * g.images for g in groups)), groups_reduce(groups)


def most_within(count: int, fraction_at: Callable[[int], float], budget_frac: float) -> int | None:
    """The last index of ``count`` values, in order of rising compute, whose ``fraction_at`` is within
    ``budget_frac``; None when even the first (the cheapest) spends more."""
    fits = lambda i: fraction_at(i) <= budget_frac * (1 + BUDGET_SLACK_FRAC)  # noqa: E731
    if count == 0 or not fits(0):
        return None
    lo, hi = 0, count - 1  # invariant: lo fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


T = TypeVar("T")


@dataclass(frozen=True)
class Solved(Generic[T]):
    """What :func:`solve_within` found: the value that spends the most within the budget (None: even
    the cheapest spends more) and its share of the baseline (or the cheapest's)."""

    value: T | None
    spent_frac: float


def solve_within(values: Sequence[T], fraction_of: Callable[[T], float], budget_frac: float) -> Solved[T]:
    """The one budget solver: of ``values`` in order of rising compute, the one with the most compute whose
    ``fraction_of`` (its share of the baseline) is within ``budget_frac``; each value is costed once."""
    spent: dict[int, float] = {}

    def fraction_at(index: int) -> float:
        if index not in spent:
            spent[index] = fraction_of(values[index])
        return spent[index]

    index = most_within(len(values), fraction_at, budget_frac)
    if index is None:
        return Solved(None, fraction_at(0) if values else 1.0)
    return Solved(values[index], fraction_at(index))


def grid(start: float, stop: float, step: float = 0.001) -> list[float]:
    """Values from ``start`` to ``stop`` inclusive on a 0.001 grid (either direction), rounded to 3 decimals."""
    count = int(round(abs(stop - start) / step))
    sign = 1 if stop >= start else -1
    return [round(start + sign * i * step, 3) for i in range(count + 1)]


def nearest_below_note(spent_frac: float, budget_frac: float) -> str:
    """The one rule for a setting that lands below its budget: said when more than 2% below."""
    if spent_frac < budget_frac * (1 - BUDGET_TOLERANCE_FRAC):
        return f"spends {spent_frac:.1%}: the nearest setting below {budget_frac:.0%}"
    return ""
