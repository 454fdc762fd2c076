"""Results -> rich tables, for the terminal. Nothing below the CLI imports this module.

Pure formatting: every function returns a rich renderable or a string; nothing here prints.
The machine-readable forms (run.json, --json, history.csv) are in :mod:`trdcli.run.results`,
the figures in :mod:`trdcli.run.plots`.
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text

from trdcli.core.cost import ComputeSummary
from trdcli.core.recipes import Recipe
from trdcli.core.schedules import ResolutionSchedule
from trdcli.run.results import RunResult

_FLOP_UNITS = ((1e18, "EFLOPs"), (1e15, "PFLOPs"), (1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1.0, "FLOPs"))


def fmt_flops(flops: float) -> str:
    """``24.30 GFLOPs``, ``1.40 EFLOPs``: FLOPs with the unit that keeps 1-3 digits before the point."""
    for scale, unit in _FLOP_UNITS:
        if abs(flops) >= scale or scale == 1.0:
            return f"{flops / scale:.2f} {unit}"
    raise AssertionError("unreachable")


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours / 24:.1f} days"


def count_of(n: int, noun: str) -> str:
    """``1 epoch``, ``8 epochs``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def fmt_pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _compute_rows(table: Table, compute: ComputeSummary) -> None:
    table.add_row("training compute", f"{fmt_flops(compute.run_flops)}{_recalibration_note(compute)}")
    table.add_row("full-resolution baseline", f"{fmt_flops(compute.baseline_train_flops)}")
    table.add_row("compute saved", _saved_with_steps_alone(compute))
    steps = ", ".join(
        f"{px} px: {n:,} steps ({compute.images_by_px[px]:,} images)" for px, n in compute.steps_by_px.items() if n
    )
    table.add_row("steps at each resolution", steps)


def train_summary_table(result: RunResult) -> Table:
    config = result.config
    table = Table(title=f"trd train: {config.arch} on {config.data}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths are copied from here: wrap, never truncate
    table.add_row("schedule", _schedule_text(config.schedule, config.size_px))
    table.add_row("recipe", recipe_text(config.recipe))
    table.add_row("top-1 accuracy", fmt_pct(result.metrics["top1"]))
    if result.compute.recalibration_flops:
        # The last epoch's line came before recalibration; the two differ by what it changed.
        table.add_row(
            "  before BatchNorm recalibration",
            f"{_last_epoch_top1(result)} (the last epoch's validation; BatchNorm's statistics were then "
            "re-estimated at full size, which the top-1 above is measured with)",
        )
    elif _reduced_without_batchnorm(result.compute):
        table.add_row(
            "  BatchNorm recalibration",
            "none: the model has no BatchNorm (LayerNorm and GroupNorm keep no statistics that reduced steps move)",
        )
    if "top5" in result.metrics:
        table.add_row("top-5 accuracy", fmt_pct(result.metrics["top5"]))
    if "ema_top1" in result.metrics:
        table.add_row(
            "EMA of the weights",
            f"top-1 {fmt_pct(result.metrics['ema_top1'])} (model_ema.pth; trd eval --ema examines it)",
        )
    table.add_row("final losses", f"train {result.metrics['train_loss']:.4f}, valid {result.metrics['valid_loss']:.4f}")
    _compute_rows(table, result.compute)
    table.add_row("validation compute", f"{fmt_flops(result.compute.valid_flops)} (not part of compute saved)")
    if result.prepared_dir is not None:
        table.add_row(
            "images read", f"reduced steps: the prepared copy in {result.prepared_dir}; the rest: the originals"
        )
    table.add_row("wall time", f"{fmt_duration(result.wall_time_s)} on {result.device}, in {result.precision}")
    if result.data_wait is not None:
        table.add_row("waiting for data", _data_wait_text(result.data_wait))
    ignored = f" ({result.ignored_files:,} non-image files ignored)" if result.ignored_files else ""
    table.add_row(
        "images", f"{result.train_images:,} train, {result.valid_images:,} valid, {result.num_classes} classes{ignored}"
    )
    if result.skipped_images:
        table.add_row("skipped images", Text(f"{len(result.skipped_images)} unreadable", style="yellow"))
    table.add_row("run directory", str(result.run_dir))
    return table


def _data_wait_text(data_wait) -> str:
    by_px = ", ".join(
        f"{px} px steps {fmt_pct(data_wait.wait_frac_at(px))}" for px in sorted(data_wait.wait_s_by_px, reverse=True)
    )
    return f"{fmt_pct(data_wait.wait_frac)} of training time ({by_px})"


def _fmt_param(value: Any) -> str:
    """Schedule parameters for people: 0.5714 rather than 0.5714285714285714."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_fmt_param(v) for v in value) + ")"
    return str(value)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_param(v)}" for k, v in params.items())


def recipe_text(recipe: Recipe) -> str:
    """``paper: sgd (momentum 0.9), weight decay 0.0001 on every parameter, step (x0.1 at epochs 75, 150, 225)``."""
    momentum = f" (momentum {recipe.momentum:g})" if recipe.momentum is not None else ""
    decay = f"weight decay {recipe.wd:g}" + (" on every parameter" if recipe.wd_norm_bias else " off norm and bias")
    schedule = recipe.lr_schedule
    if recipe.milestones:
        schedule += f" (x{recipe.gamma:g} at epochs {', '.join(f'{m:g}' for m in recipe.milestones)})"
    if recipe.warmup_epochs:
        schedule += f", {recipe.warmup_epochs:g} warm-up epochs"
    regularisation = (("label smoothing", recipe.label_smoothing), ("mixup", recipe.mixup), ("cutmix", recipe.cutmix))
    extras = [f"{name} {value:g}" for name, value in regularisation if value]
    return ", ".join([f"{recipe.name}: {recipe.opt}{momentum}", decay, schedule, *extras])


def _schedule_text(schedule: ResolutionSchedule, full_px: int) -> str:
    params = _params_text(schedule.params())
    return f"{schedule.name} ({params}) at {full_px} px" if params else f"{schedule.name} at {full_px} px"


def fmt_pct_interval(interval: tuple[float, float]) -> str:
    low, high = interval
    return f"{100 * low:.0f}-{100 * high:.0f}%"


def _last_epoch_top1(run: RunResult) -> str:
    return fmt_pct(run.history[-1]["accuracy"]) if run.history and "accuracy" in run.history[-1] else "-"


def demo_reading(baseline: RunResult, trd: RunResult, biases: tuple) -> Text:
    """What `trd demo`'s two runs show, in a few lines: where TRD's lead comes from, and the shape bias."""
    before = trd.history[-1]["accuracy"] if trd.history else float("nan")
    after, base = trd.metrics["top1"], baseline.metrics["top1"]
    (base_bias, trd_bias) = biases
    lines = [
        f"TRD's top-1 was {fmt_pct(before)} before BatchNorm recalibration and {fmt_pct(after)} after it "
        f"(the baseline: {fmt_pct(base)}). {fmt_pct(_reduced_share(trd))} of its steps trained at "
        f"{_low_px(trd)} px, and BatchNorm's statistics with them; recalibration re-estimates them on "
        f"{trd.config.size_px} px images, which is what evaluation sees. The baseline has nothing to re-estimate.",
        f"Shape bias on the cue-conflict split: TRD {fmt_pct(trd_bias.shape_bias)} "
        f"({fmt_pct_interval(trd_bias.shape_bias_ci95)}), the baseline {fmt_pct(base_bias.shape_bias)} "
        f"({fmt_pct_interval(base_bias.shape_bias_ci95)}): the reduced steps cannot see the stripes, so TRD "
        "learns the shapes.",
        "Over 3 seeds (benchmarks/demo_ablation.sh, docs/method.md): the same recalibration gave the baseline "
        "nothing (38.1% -> 37.7%) and TRD +19 points (41.5% -> 60.8%); TRD's shape bias was 57% without it and "
        "74% with it, the baseline's 27%. One seed moves a lot.",
    ]
    return Text("\n".join(lines))


def _low_px(run: RunResult) -> int:
    return min(run.compute.steps_by_px)


def _reduced_share(run: RunResult) -> float:
    steps = run.compute.steps_by_px
    return sum(n for px, n in steps.items() if px != run.compute.full_px) / max(sum(steps.values()), 1)


def comparison_table(
    baseline: RunResult, trd: RunResult, title: str = "baseline vs TRD", shape_biases: tuple | None = None
) -> Table:
    """Two runs side by side; ``shape_biases``: the two runs' :class:`~trdcli.evaluate.cue_conflict.ShapeBias`."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("baseline", justify="right")
    table.add_column(trd.config.schedule.name, justify="right")
    table.add_row("top-1 accuracy", fmt_pct(baseline.metrics["top1"]), fmt_pct(trd.metrics["top1"]))
    if trd.compute.recalibration_flops or baseline.compute.recalibration_flops:
        # What recalibration added: the last epoch's validation came before it.
        table.add_row("  before BatchNorm recalibration", _last_epoch_top1(baseline), _last_epoch_top1(trd))
    table.add_row("training compute", fmt_flops(baseline.compute.run_flops), fmt_flops(trd.compute.run_flops))
    table.add_row(
        "compute saved", fmt_pct(baseline.compute.compute_saved_frac), fmt_pct(trd.compute.compute_saved_frac)
    )
    if trd.compute.recalibration_flops or baseline.compute.recalibration_flops:
        table.add_row(
            "  of it, the training steps alone",
            fmt_pct(baseline.compute.train_compute_saved_frac),
            fmt_pct(trd.compute.train_compute_saved_frac),
        )
    table.add_row("wall time", fmt_duration(baseline.wall_time_s), fmt_duration(trd.wall_time_s))
    wall_saved = 1 - trd.wall_time_s / baseline.wall_time_s if baseline.wall_time_s else 0.0
    table.add_row("wall time saved", "-", fmt_pct(wall_saved))
    if shape_biases is not None:
        table.add_row("shape bias (cue-conflict split)", *(fmt_pct(b.shape_bias) for b in shape_biases))
        table.add_row("  95% interval (Wilson)", *(fmt_pct_interval(b.shape_bias_ci95) for b in shape_biases))
    return table


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(profile, full_px: int, width: int = 48) -> str:
    """The planned resolution over the run (a plan_profile, or px per step) as one line of block characters
    (mean px per bucket)."""
    import numpy as np

    px = np.asarray(profile, dtype=np.float64)
    if px.size == 0:
        return ""
    buckets = np.array_split(px, min(width, px.size))
    levels = [min(int(b.mean() / full_px * len(_BARS)), len(_BARS) - 1) for b in buckets]
    return "".join(_BARS[level] for level in levels)


def estimate_tables(report) -> list:
    """Rich renderables for `trd estimate-cost`: the run, per resolution, totals, a budget's answer, notes."""
    out = [_plan_header(report.estimate), _per_px_table(report), _totals_table(report.estimate)]
    if report.budget is not None:
        out.append(budget_table(report.budget))
    if report.feed is not None:
        out.append(feed_table(report.feed))
    out.append(Text("\n".join(_plan_notes(report.estimate)), style="dim"))
    return out


def feed_table(feed) -> Table:
    """The feed check: one worker's rate at each resolution and, with the model's, the workers a device needs."""
    table = Table(
        title=f"the loader, timed on {feed.sample_images} of your images (one worker, decode + crop + resize)",
        title_justify="left",
        caption=f"trd train gives each device {feed.workers_available} data-loading worker(s) on this machine"
        + (f"; reduced sizes read the prepared copy in {feed.prepared_dir}" if feed.prepared_dir else ""),
        caption_justify="left",
    )
    for name in ("px", "loader images/s per worker", "model images/s per device", "workers to keep it fed"):
        table.add_column(name, justify="right")
    bound = {row.px for row in feed.loader_bound()}
    for row in feed.rows:
        model = f"{row.model_images_per_s:,.0f}" if row.model_images_per_s else "- (no throughput given)"
        workers = "-" if row.workers_needed is None else f"{row.workers_needed:,}"
        if row.px in bound:
            workers = Text(f"{workers}: loader-bound here", style="bold red")
        table.add_row(str(row.px), f"{row.loader_images_per_s:,.0f}", model, workers)
    return table


def _saved_text(fraction: float) -> Text:
    return Text(fmt_pct(fraction), style="bold green" if fraction > 0 else "")


def _reduced_without_batchnorm(compute: ComputeSummary) -> bool:
    reduced = any(n for px, n in compute.steps_by_px.items() if px != compute.full_px)
    return reduced and not compute.flops_by_px[compute.full_px].has_batchnorm


def _recalibration_note(compute: ComputeSummary) -> str:
    if not compute.recalibration_flops:
        return ""
    return (
        f" ({fmt_flops(compute.train_flops)} training steps + {fmt_flops(compute.recalibration_flops)} "
        "BatchNorm recalibration)"
    )


def _saved_with_steps_alone(compute: ComputeSummary) -> Text:
    """Compute saved as docs/method.md's "Compute" counts it (recalibration included), and the steps'
    own figure beside it."""
    text = _saved_text(compute.compute_saved_frac)
    if compute.recalibration_flops:
        text.append(f" (the training steps alone: {fmt_pct(compute.train_compute_saved_frac)})")
    return text


def _plan_header(est) -> Table:
    compute, shape = est.compute, est.shape
    header = Table(show_header=False, box=None, title_justify="left", title=f"trd estimate-cost: {est.arch}")
    header.add_column(style="bold")
    header.add_column()
    header.add_row(
        "run",
        f"{est.dataset.train_images:,} training images x {count_of(shape.epochs, 'epoch')}, batch {shape.batch_size}: "
        f"{shape.total_steps:,} steps at {shape.full_px} px, {est.dataset.num_classes} classes",
    )
    header.add_row("schedule", _schedule_text(est.schedule, shape.full_px))
    header.add_row("resolution over the run", sparkline(est.profile, shape.full_px))
    header.add_row("compute fraction", f"{fmt_pct(compute.compute_fraction)} of the full-resolution baseline")
    header.add_row("compute saved", _saved_with_steps_alone(compute))
    return header


def _per_px_table(report) -> Table:
    est = report.estimate
    compute = est.compute
    per_px = Table(title="per resolution", title_justify="left")
    for column in ("px", "forward / image", "train / image", "vs full", "steps", "images"):
        per_px.add_column(column, justify="right")
    if est.throughput is not None:
        per_px.add_column("images/s", justify="right")
    full_train = compute.flops_by_px[est.shape.full_px].train_flops
    for px, flops in compute.flops_by_px.items():
        row = [
            str(px),
            fmt_flops(flops.forward_flops),
            fmt_flops(flops.train_flops),
            fmt_pct(flops.train_flops / full_train),
            f"{compute.steps_by_px[px]:,}",
            f"{compute.images_by_px[px]:,}",
        ]
        if est.throughput is not None:
            row.append(f"{1 / est.throughput.seconds_per_image(px, report.flops_at):,.1f}")
        per_px.add_row(*row)
    return per_px


def _totals_table(est) -> Table:
    compute = est.compute
    totals = Table(title="totals", title_justify="left")
    totals.add_column("")
    totals.add_column("this plan", justify="right")
    totals.add_column("baseline (full px)", justify="right")
    totals.add_column("saved", justify="right")
    if compute.recalibration_flops:
        totals.add_row(
            "training steps",
            fmt_flops(compute.train_flops),
            fmt_flops(compute.baseline_train_flops),
            _saved_text(compute.train_compute_saved_frac),
        )
        totals.add_row("BatchNorm recalibration", fmt_flops(compute.recalibration_flops), "-", "-")
    totals.add_row(
        "training compute",
        fmt_flops(compute.run_flops),
        fmt_flops(compute.baseline_train_flops),
        _saved_text(compute.compute_saved_frac),
    )
    if compute.valid_flops:
        # The plan validates once more after recalibrating, the baseline does not: no like-for-like column.
        totals.add_row("validation compute", fmt_flops(compute.valid_flops), "-", "-")
    if est.time_s is not None:
        devices = f" on {est.devices} devices" if est.devices > 1 else ""
        totals.add_row(
            f"wall time{devices}",
            fmt_duration(est.time_s),
            fmt_duration(est.baseline_time_s),
            Text(fmt_pct(1 - est.time_s / est.baseline_time_s), style="bold"),
        )
    if est.cost is not None:
        totals.add_row(
            "money", f"{est.cost:,.2f}", f"{est.baseline_cost:,.2f}", fmt_pct(1 - est.cost / est.baseline_cost)
        )
    return totals


def _plan_notes(est) -> list[str]:
    notes = [
        "FLOPs: 2 per multiply-add, measured with torch.utils.flop_counter on the model (forward + backward); "
        "torchvision's model cards quote GMACs, half these numbers.",
    ]
    if est.throughput is None:
        notes.append(
            "No throughput given: add --measure, --throughput 224=2600,112=9800 or --gpu-flops for time and money."
        )
        return notes
    time_saved = 1 - est.time_s / est.baseline_time_s
    notes.append(
        f"Throughput {est.throughput.source}. Time follows this throughput, not FLOPs "
        f"(here {fmt_pct(time_saved)} of the time saved against {fmt_pct(est.compute.compute_saved_frac)} of the "
        "compute): small images often run at lower hardware efficiency, and the data loader is not in it."
    )
    return notes


def budget_table(answer) -> Table:
    metric = {"compute": "compute", "time": "wall time", "money": "money"}[answer.metric]
    table = Table(
        title=f"budget {answer.budget.text}: {fmt_pct(answer.budget_frac)} of the baseline's {metric}",
        title_justify="left",
    )
    table.add_column("low px", justify="right")
    table.add_column("window: --until (prob 1)", justify="right")
    table.add_column(f"{metric} of baseline", justify="right")
    table.add_column("spread: --prob (until 1)", justify="right")
    table.add_column(f"{metric} of baseline", justify="right")
    table.add_column("")
    for option in [answer.best, *answer.alternatives]:
        marker = "<- your --low-res" if option is answer.best else ""
        if option.until is None:
            table.add_row(str(option.low_px), "-", "-", "-", "-", option.reason or marker)
            continue
        table.add_row(
            str(option.low_px),
            f"{option.until:.3f}",
            fmt_pct(option.fraction),
            f"{option.spread_prob:.3f}",
            fmt_pct(option.spread_fraction),
            marker,
        )
    return table


def presets_table(rows: list[dict[str, Any]], arch: str, size_px: int, epochs: int) -> Table:
    title = f"trd presets (compute for {arch} at {size_px} px, {count_of(epochs, 'epoch')})"
    table = Table(title=title, title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what it does")
    table.add_column("parameters", overflow="fold")
    table.add_column("compute", justify="right")
    table.add_column("source", style="dim", overflow="fold")
    for row in rows:
        params = _params_text({k: v for k, v in row["schedule"].items() if k not in ("name", "kind")})
        table.add_row(row["name"], row["description"], params or "-", fmt_pct(row["compute_fraction"]), row["source"])
    return table


def _mean_std(row: dict[str, Any], key: str, fmt) -> str:
    if f"{key}_mean" not in row:
        return "-"
    return f"{fmt(row[f'{key}_mean'])} ± {fmt(row[f'{key}_std'])}" if len(row["seeds"]) > 1 else fmt(row[f"{key}_mean"])


def compare_table(rows: list[dict[str, Any]], title: str) -> Table:
    """`trd compare`: a row per setting, mean ± sample std over seeds; compute against the recipe's baseline."""
    recalibrated = any(r["compute_fraction"] != r["train_compute_fraction"] for r in rows)
    caption = "compute: training steps and BatchNorm recalibration" if recalibrated else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("setting", overflow="fold")
    for column in ("epochs", "seeds", "top-1", "top-5", "compute", "Δ top-1 vs baseline", "wall time"):
        table.add_column(column, justify="right", no_wrap=column != "Δ top-1 vs baseline")
    baseline = next((r for r in rows if r["setting"] == "baseline"), None)
    recipes = [r.get("recipe") for r in rows]
    if recipes[0] is not None:
        # Every row's recipe in the title when they share it; each row names what its own changes.
        table.title = f"{title}, recipe {recipe_text(_recipe_of(recipes[0]))}"
    for row in rows:
        name = row["setting"] + (f" (equal compute to {row['matches']})" if row["matches"] else "")
        if row.get("recipe") not in (None, recipes[0]):
            changed = {k: v for k, v in row["recipe"].items() if recipes[0].get(k) != v}
            name += " (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"
        delta = "-"
        if baseline is not None and row is not baseline:
            delta = f"{100 * (row['top1_mean'] - baseline['top1_mean']):+.1f} pts"
        table.add_row(
            name,
            str(row["epochs"]),
            str(len(row["seeds"])),
            _mean_std(row, "top1", fmt_pct),
            _mean_std(row, "top5", fmt_pct),
            fmt_pct(row["recipe_compute_fraction"]),
            delta,
            _mean_std(row, "wall_time_s", fmt_duration),
        )
    return table


def budget_compare_table(rows: list[dict[str, Any]], baseline: dict[str, Any] | None, title: str) -> Table:
    """`trd compare --budget`: each family at each budget, its solved setting, accuracy and what it really spent."""
    table = Table(title=title, title_justify="left", caption=_BUDGET_CAPTION, caption_justify="left")
    for column in ("budget", "family", "solved setting"):
        table.add_column(column, overflow="fold")
    for column in ("seeds", "top-1", "top-5", "compute", "Δ top-1 vs baseline", "wall time"):
        table.add_column(column, justify="right", no_wrap=column != "Δ top-1 vs baseline")
    if baseline is not None:
        table.add_row("-", "baseline", "full size, every epoch", *_result_cells(baseline), "-", _wall(baseline))
    for row in rows:
        budget = fmt_pct(row["budget_frac"])
        if not row["reached"]:
            unreached = Text(f"cannot reach it: {row['parameter']} spends {fmt_pct(row['planned_compute_fraction'])}")
            table.add_row(budget, row["family"], unreached, *["-"] * 6, style="yellow")
            continue
        result = row["result"]
        delta = "-" if baseline is None else f"{100 * (result['top1_mean'] - baseline['top1_mean']):+.1f} pts"
        setting = row["parameter"] + (" (nearest below)" if row["note"] else "")
        table.add_row(budget, row["family"], setting, *_result_cells(result), delta, _wall(result))
    return table


def _result_cells(result: dict[str, Any]) -> list[str]:
    """Seeds, top-1, top-5 and compute of a summary row."""
    return [
        str(len(result["seeds"])), _mean_std(result, "top1", fmt_pct), _mean_std(result, "top5", fmt_pct),
        fmt_pct(result["recipe_compute_fraction"]),
    ]  # fmt: skip


def _wall(result: dict[str, Any]) -> str:
    return _mean_std(result, "wall_time_s", fmt_duration)


_BUDGET_CAPTION = (
    "compute: what the runs spent, training and BatchNorm recalibration, against the full baseline; each "
    "family's setting solved by trd's cost model to spend at most the budget (nearest below: the next "
    "setting up spends more)"
)


def eval_tables(result) -> list:
    """`trd eval`: the test-resolution sweep, the probes, and cue-conflict shape bias where measured."""
    out = [_sweep_table(result)]
    if result.probes:
        out.append(_probes_table(result.probes))
    if result.cue_conflict:
        cue = result.cue_conflict
        out.append(
            Text(
                f"cue-conflict shape bias {fmt_pct(cue['shape_bias'])} "
                f"(95% interval {fmt_pct_interval(cue['shape_bias_ci95'])}; {cue['shape_decisions']} shape, "
                f"{cue['texture_decisions']} texture decisions of {cue['images']} images; "
                f"either cue named: {fmt_pct(cue['cue_accuracy'])})"
            )
        )
    out.append(Text(f"eval.json and eval.png in {result.out_dir}", style="dim"))
    return out


def _sweep_table(result) -> Table:
    recal = " (BatchNorm recalibrated at each size)" if result.sweep and result.sweep[0]["bn_recalibrated"] else ""
    table = Table(title=f"trd eval: {result.arch}, trained at {result.train_px} px{recal}", title_justify="left")
    for column in ("test px", "top-1", "top-5", "forward / image", "vs train px"):
        table.add_column(column, justify="right")
    at_train = next((r for r in result.sweep if r["px"] == result.train_px), None)
    for row in result.sweep:
        ratio = fmt_pct(row["forward_flops_per_image"] / at_train["forward_flops_per_image"]) if at_train else "-"
        marker = " (train)" if row["px"] == result.train_px else ""
        top5 = fmt_pct(row["top5"]) if "top5" in row else "-"
        table.add_row(
            f"{row['px']}{marker}", fmt_pct(row["top1"]), top5, fmt_flops(row["forward_flops_per_image"]), ratio
        )
    return table


def _probes_table(probes: dict[str, Any]) -> Table:
    table = Table(title=f"shape and texture probes at {probes['px']} px (clean top-1 {fmt_pct(probes['clean_top1'])})",
                  title_justify="left")  # fmt: skip
    for column in ("probe", "removes", "top-1", "retention"):
        table.add_column(column, justify="left" if column in ("probe", "removes") else "right")
    for row in probes["patch_shuffle"]:
        grid = row["grid"]
        table.add_row(f"patch shuffle {grid}x{grid}", "shape", fmt_pct(row["top1"]), fmt_pct(row["retention"]))
    for row in probes["low_pass"]:
        table.add_row(f"low-pass {row['radius_frac']:g} of Nyquist", "texture", fmt_pct(row["top1"]),
                      fmt_pct(row["retention"]))  # fmt: skip
    hybrid = probes["hybrid"]
    table.add_row(
        f"hybrid at {hybrid['radius_frac']:g} of Nyquist",
        "-",
        f"low-frequency bias {fmt_pct(hybrid['low_frequency_bias'])}",
        f"{hybrid['pairs']:,} pairs",
    )
    return table


def _recipe_of(options: dict) -> Recipe:
    return Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def recipes_table(rows: list[dict]) -> Table:
    """``trd recipes``: each named recipe with its values, its source and what trd leaves out of it."""
    table = Table(title="trd recipes (--recipe NAME; explicit options override its values)", title_justify="left")
    for column in ("recipe", "epochs, batch, rate", "options", "source reports", "left out"):
        table.add_column(column, overflow="fold")
    for row in rows:
        recipe = _recipe_of(row["options"])
        table.add_row(
            row["name"],
            f"{row['epochs']} epochs, batch {row['batch_size']}, lr {row['lr']:g}",
            recipe_text(recipe).split(": ", 1)[1],
            f"{row['reported']}\n[dim]{row['source']}[/]",
            "\n".join(row["left_out"]) or "-",
        )
    return table
