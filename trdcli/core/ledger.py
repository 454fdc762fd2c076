"""The one ledger: a share of the baseline, and the baseline it is a share of (docs/method.md, "Compute").

``run.json``'s ``compute_fraction``, the summaries, the trackers, ``trd compare``, both budget paths
and ``trd estimate-cost`` read a share of the baseline through :func:`share_of_baseline`, of a
baseline made by :func:`baseline_cost`. Two baselines are in use, and every share says which:

- **a run's own**: the same steps (the same images) at full resolution: ``run.json``'s
  ``compute_fraction``, and ``trd compare``'s under the same key;
- **the recipe's**: the recipe's epochs of the training set at full resolution: what a budget is
  a share of, and ``trd compare``'s ``recipe_compute_fraction`` (a baseline for fewer epochs
  spends a share of the recipe's below 1).

Imports nothing, so the command line's light modules can read it.
"""

from __future__ import annotations


def baseline_cost(total_images: int, full_cost_per_image: float) -> float:
    """The baseline a share is of: ``total_images`` trained at full resolution, at ``full_cost_per_image``
    (train FLOPs per image, or seconds or money in a budget's metric). Exact for integers."""
    return total_images * full_cost_per_image


def share_of_baseline(spent: float, baseline: float) -> float:
    """What a run (or a plan) spends over its baseline's cost; 1.0 for an empty baseline."""
    return spent / baseline if baseline else 1.0
