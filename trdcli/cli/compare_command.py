"""``trd compare``: settings x seeds under one recipe, with equal-compute baselines and budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli.cli.options import (
    RECIPE_OPTIONS,
    ArchOpt,
    BatchOrRecipeOpt,
    CompileOpt,
    EmaOpt,
    EpochsOrRecipeOpt,
    JsonOpt,
    LogToOpt,
    MinScaleOpt,
    PrecisionOpt,
    SizeOpt,
    WandbProjectOpt,
    WorkersOpt,
    recipe_of,
    with_option_groups,
)
from trdcli.cli.shell import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    app,
    fail,
    interrupted_message,
    print_json,
    stderr,
    stdout,
    use_wandb_project,
    user_errors,
)
from trdcli.run.config import DEFAULT_LR, TrainConfig


@app.command()
@with_option_groups
def compare(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Image folder, as for `trd train`.")],
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help="A setting to train (repeat): a preset (trd-window), baseline, or [label:]key=value,... with keys "
            "preset, low_res, until, prob, prob_end, initial_scale, bn_mode, bn_recalibrate, bn_recal_view, tail_lr, "
            "and the recipe's opt, momentum, wd, lr_schedule, warmup_epochs, label_smoothing, mixup, cutmix. "
            "Default: baseline and trd's default recipe."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Seeds: a count (3 = 0,1,2) or a list (0,1,2; one seed: 7,).")] = "3",
    arch: ArchOpt = TrainConfig.arch,
    epochs: EpochsOrRecipeOpt = None,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOrRecipeOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(help=f"Peak learning rate, for every run (default {DEFAULT_LR:g}, or the recipe's scaled)."),
    ] = None,
    recipe_options: dict = RECIPE_OPTIONS,
    valid_pct: Annotated[float | None, typer.Option(help="As for `trd train`.")] = None,
    workers: WorkersOpt = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best available).")] = None,
    precision: PrecisionOpt = TrainConfig.precision,
    ema: EmaOpt = None,
    compile_model: CompileOpt = False,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Compare directory (default: runs/compare-<data>-<arch>-<size>px-<epochs>ep); rerun resumes."
        ),
    ] = None,
    equal_compute: Annotated[
        bool, typer.Option(help="Add each reducing setting's equal-compute baseline (fewer epochs at full size).")
    ] = True,
    budget: Annotated[
        list[float] | None,
        typer.Option(
            help="A fraction of the baseline's compute, 0 < F < 1 (repeat): every schedule family is solved to "
            "spend it and trained, beside the full baseline and any --setting."
        ),
    ] = None,
    family: Annotated[
        list[str] | None,
        typer.Option(help="With --budget: only these families (repeat; default all, `trd compare --help` lists them)."),
    ] = None,
    log_to: LogToOpt = None,
    wandb_project: WandbProjectOpt = None,
    json_out: JsonOpt = False,
):
    """Train settings x seeds with one recipe; compare accuracy, compute and time against equal-compute baselines.

    With --budget F, every schedule family (trd, window, falling, composer, ffcv, fastbook, fixed,
    fewer-epochs) at the setting that spends F of the baseline's compute, side by side.
    """
    from trdcli.cli import report
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.cli.values import parse_seeds, parse_setting
    from trdcli.core.errors import TrainingInterrupted
    from trdcli.plan.compare import (
        CompareConfig,
        budget_summary,
        compare_json,
        default_settings,
        run_compare,
        summary_rows,
    )

    use_wandb_project(wandb_project)
    with user_errors():
        chosen = recipe_of(epochs=epochs, batch_size=batch_size, lr=lr, **recipe_options)
        epochs = chosen.epochs
        base = TrainConfig(
            data=data, arch=arch, epochs=epochs, size_px=size, batch_size=chosen.batch_size,
            lr=DEFAULT_LR if chosen.lr is None else chosen.lr, recipe=chosen.recipe, valid_pct=valid_pct,
            workers=workers, device=device, precision=precision, ema_decay=ema, compile=compile_model,
            min_scale=min_scale, log_to=tuple(log_to or ()),
        )  # fmt: skip
        out = out or Path("runs") / f"compare-{data.resolve().name}-{arch}-{size}px-{epochs}ep"
        settings = tuple(parse_setting(s) for s in setting) if setting else default_settings(size, bool(budget))
        config = CompareConfig(
            base, settings, parse_seeds(seeds), out, equal_compute, tuple(budget or ()),
            tuple(family) if family else None,
        )  # fmt: skip
        try:
            with RichTrainObserver(stderr) as observer:
                compared = run_compare(config, observer)
        except TrainingInterrupted as exc:
            code = EXIT_TERMINATED if exc.signal_name == "SIGTERM" else EXIT_INTERRUPTED
            message = f"{interrupted_message(exc).split(';')[0]}; finished runs are kept in {out}"
            raise fail(f"{message}: rerun the same command to go on", code) from None
    if json_out:
        print_json(compare_json(compared))
    else:
        title = f"trd compare: {arch} on {data}, {report.count_of(epochs, 'epoch')}"
        rows = summary_rows(compared)
        stdout.print(report.compare_table(rows, title))
        if equal_compute and epochs == 1:
            stdout.print("no equal-compute baseline: at 1 epoch the baseline cannot train fewer whole epochs")
        if compared.budget_rows:
            baseline = next((r for r in rows if r["setting"] == "baseline"), None)
            budgets = budget_summary(compared, rows)
            stdout.print(report.budget_compare_table(budgets, baseline, f"{title}, at equal compute"))
        stdout.print(f"runs, compare.json and compare.png in {out}", highlight=False)
    if compared.write_error:
        raise fail(compared.write_error)
