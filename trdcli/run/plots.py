"""PNG figures: a run's resolution per step (with accuracy per epoch), and a plan's.

matplotlib is imported inside each function, with the Agg backend: figures are files, never windows.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from trdcli.run.results import RunResult


@contextmanager
def _figure(path: Path, figsize: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _step_axes(ax, profile_px, total_steps: int, full_px: int, ylabel: str) -> None:
    """``profile_px``: px per step, or the mean px of equal runs of steps (trdcli.core.cost.plan_profile)."""
    import numpy as np

    starts = np.arange(len(profile_px)) * total_steps // max(len(profile_px), 1)
    ax.step(starts, profile_px, where="post", color="tab:blue", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    mean = "" if len(profile_px) == total_steps else f"mean of every {total_steps / len(profile_px):.0f} steps' "
    ax.set_ylabel(mean + ylabel, color="tab:blue")
    ax.set_ylim(0, full_px * 1.1)


def save_plan_plot(profile_px, total_steps: int, full_px: int, title: str, path: Path) -> None:
    """The planned resolution over the run (a plan_profile)."""
    with _figure(path, (8, 3)) as ax:
        _step_axes(ax, profile_px, total_steps, full_px, "resolution (px)")
        ax.set_title(title)


def save_schedule_plot(result: RunResult, path: Path) -> None:
    """Resolution per step of a run, with validation accuracy per epoch on a second axis."""
    with _figure(path, (8, 3.5)) as ax:
        total_steps = sum(g.steps for g in result.step_groups)
        _step_axes(ax, result.profile_px, total_steps, result.config.size_px, "training resolution (px)")
        saved = f"{100 * result.compute.compute_saved_frac:.1f}%"
        ax.set_title(f"{result.config.arch}, {result.config.schedule.name}: compute saved {saved}")
        if result.history and "accuracy" in result.history[0]:
            per_epoch = total_steps / max(len(result.history), 1)
            acc_ax = ax.twinx()
            xs = [(row["epoch"] + 1) * per_epoch for row in result.history]
            acc_ax.plot(xs, [row["accuracy"] for row in result.history], "o-", color="tab:orange",
                        label="each epoch")  # fmt: skip
            if result.compute.recalibration_flops and "top1" in result.metrics:
                # The final figure is measured after BatchNorm recalibration, which the epochs' are not.
                acc_ax.plot([xs[-1]], [result.metrics["top1"]], "*", color="tab:red", markersize=12,
                            label=f"after BatchNorm recalibration: {100 * result.metrics['top1']:.1f}%")  # fmt: skip
                acc_ax.legend(loc="center right", fontsize="small", framealpha=0.9)
            acc_ax.set_ylabel("validation top-1", color="tab:orange")
            acc_ax.set_ylim(0, 1)


def save_compare_plot(payload: dict, path: Path) -> None:
    """Top-1 against compute (fraction of the recipe's baseline): a dot per run, mean ± std per setting;
    with budgets, one line per family through its budgets (the Pareto view), other settings as points."""
    with _figure(path, (7, 4.5)) as ax:
        in_budget = _plot_budget_families(ax, payload.get("budgets", []))
        for row in payload["settings"]:
            if row["setting"] in in_budget:
                continue
            runs = [r for r in payload["runs"] if r["setting"] == row["setting"]]
            xs = [r["recipe_compute_fraction"] for r in runs]
            ys = [100 * r["metrics"]["top1"] for r in runs]
            dots = ax.scatter(xs, ys, s=14, alpha=0.5)
            ax.errorbar(
                row["recipe_compute_fraction"],
                100 * row["top1_mean"],
                yerr=100 * row["top1_std"],
                fmt="o",
                capsize=4,
                color=dots.get_facecolor()[0],
                label=row["setting"],
            )
        ax.set_xlabel("training compute (fraction of the full-resolution baseline)")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_xlim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def _plot_budget_families(ax, budgets: list[dict]) -> set[str]:
    """A line per family over the budgets it reached, mean ± std of top-1 at the compute it spent; the
    labels of the settings drawn."""
    drawn: set[str] = set()
    families = dict.fromkeys(b["family"] for b in budgets)
    for family in families:
        results = [b["result"] for b in budgets if b["family"] == family and b["reached"]]
        points = sorted((r["recipe_compute_fraction"], 100 * r["top1_mean"], 100 * r["top1_std"]) for r in results)
        drawn |= {r["setting"] for r in results}
        if points:
            xs, ys, errs = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=errs, fmt="-o", capsize=3, markersize=4, label=family)
    return drawn


def save_eval_plot(sweep: list[dict], train_px: int, title: str, path: Path) -> None:
    """Top-1 against forward GFLOPs per image, one point per test size, the training size marked."""
    with _figure(path, (6.5, 4)) as ax:
        xs = [row["forward_flops_per_image"] / 1e9 for row in sweep]
        ys = [100 * row["top1"] for row in sweep]
        ax.plot(xs, ys, "o-")
        # Each label sits right of and below its point: room inside the plot for the right-most and the lowest.
        ax.margins(x=0.16, y=0.15)
        for row, x, y in zip(sweep, xs, ys, strict=True):
            ax.annotate(f"{row['px']} px" + (" (train)" if row["px"] == train_px else ""), (x, y), fontsize=8,
                        textcoords="offset points", xytext=(4, -10))  # fmt: skip
        ax.set_xlabel("inference compute (forward GFLOPs per image)")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
