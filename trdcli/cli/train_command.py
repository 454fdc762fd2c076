"""``trd train``: one run, its progress, its summary and its exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli.cli.options import (
    DEFAULT_RECAL_VIEW,
    RECIPE_OPTIONS,
    SCHEDULE_OPTIONS,
    ArchOpt,
    BatchOrRecipeOpt,
    BnMode,
    BnModeOpt,
    BnRecalibrateOpt,
    BnRecalViewOpt,
    CompileOpt,
    EmaOpt,
    EpochsOrRecipeOpt,
    JsonOpt,
    LogToOpt,
    MinScaleOpt,
    PrecisionOpt,
    PreparedOpt,
    ResizeMode,
    SeedOpt,
    SizeOpt,
    TailLrOpt,
    UsePreparedOpt,
    WandbProjectOpt,
    WorkersOpt,
    recipe_of,
    schedule_of,
    with_option_groups,
)
from trdcli.cli.shell import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    FLAGS,
    app,
    fail,
    interrupted_message,
    print_json,
    quiet_unless_main,
    stderr,
    stdout,
    use_wandb_project,
    user_errors,
)
from trdcli.core.errors import TRDError
from trdcli.run.config import TrainConfig


@app.command()
@with_option_groups
def train(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            help="Image folder: DATA/train/<class>/* and DATA/val/<class>/*, or class folders with --valid-pct.",
        ),
    ],
    arch: ArchOpt = TrainConfig.arch,
    epochs: EpochsOrRecipeOpt = None,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOrRecipeOpt = None,
    lr: Annotated[
        str | None,
        typer.Option(
            help="Peak learning rate (default 3e-3, or the recipe's scaled to --batch-size; with --resume, the "
            "run's own), or 'find' to run lr_find."
        ),
    ] = None,
    recipe_options: dict = RECIPE_OPTIONS,
    schedule_options: dict = SCHEDULE_OPTIONS,
    seed: SeedOpt = 0,
    valid_pct: Annotated[
        float | None, typer.Option(help="Hold out this fraction per class for validation (class-folder layout).")
    ] = None,
    workers: WorkersOpt = None,
    weights: Annotated[
        Path | None, typer.Option(help="Local weights file (state dict) to start from; nothing is downloaded.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<time>-<arch>-<schedule>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run from its run directory.")] = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Drop unreadable images with a warning instead of stopping.")
    ] = False,
    check_images: Annotated[
        bool, typer.Option(help="Decode every image once before training (skip for huge folders you trust).")
    ] = True,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best available).")] = None,
    precision: PrecisionOpt = TrainConfig.precision,
    ema: EmaOpt = None,
    compile_model: CompileOpt = False,
    resize_mode: Annotated[
        ResizeMode, typer.Option(help="Antialiased filter for reduced steps.")
    ] = ResizeMode.bilinear,
    bn_recalibrate: BnRecalibrateOpt = None,
    bn_recal_view: BnRecalViewOpt = DEFAULT_RECAL_VIEW,
    bn_mode: BnModeOpt = BnMode.shared,
    tail_lr: TailLrOpt = None,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    scheduled_loading: Annotated[
        bool,
        typer.Option(
            help="The loader crops each batch straight to its step's size, decoding JPEGs at reduced scale; "
            "--no-scheduled-loading loads full size and resizes the batch."
        ),
    ] = TrainConfig.scheduled_loading,
    direct_crops: Annotated[
        bool,
        typer.Option(
            help="Crop reduced steps' images straight to their size (cheaper to load; keeps more fine texture) "
            "instead of downsampling the full-size crop."
        ),
    ] = TrainConfig.direct_crops,
    max_data_wait: Annotated[
        float,
        typer.Option(
            help="Warn that the run is loader-bound above this share of training time spent waiting for data."
        ),
    ] = TrainConfig.max_data_wait_frac,
    log_to: LogToOpt = None,
    wandb_project: WandbProjectOpt = None,
    prepared: PreparedOpt = None,
    use_prepared: UsePreparedOpt = TrainConfig.use_prepared,
    json_out: JsonOpt = False,
):
    """Train a classifier on an image folder, with TRD or any preset, and report the compute it saved."""
    with user_errors():
        quiet_unless_main()
    use_wandb_project(wandb_project)
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.cli.values import parse_lr
    from trdcli.core.errors import TrainingInterrupted
    from trdcli.run.train import train as run_training

    try:
        peak_lr = parse_lr(lr) if lr is not None else None
    except TRDError as exc:  # a malformed value is a usage error (exit 2), like --epochs two
        raise typer.BadParameter(exc.rendered(FLAGS)) from None
    with user_errors():
        chosen = recipe_of(epochs=epochs, batch_size=batch_size, lr=peak_lr, **recipe_options)
        config = TrainConfig(
            data=data,
            arch=arch,
            epochs=chosen.epochs,
            size_px=size,
            batch_size=chosen.batch_size,
            lr=chosen.lr if lr is None or peak_lr is not None else None,
            lr_find=lr is not None and peak_lr is None,
            recipe=chosen.recipe,
            schedule=schedule_of(seed, **schedule_options),
            seed=seed,
            valid_pct=valid_pct,
            workers=workers,
            weights=weights,
            out_dir=out,
            resume=resume,
            skip_bad_images=skip_bad_images,
            check_images=check_images,
            device=device,
            precision=precision,
            ema_decay=ema,
            compile=compile_model,
            resize_mode=resize_mode.value,
            bn_recalibrate=bn_recalibrate,
            bn_recal_view=bn_recal_view.value,
            bn_mode=bn_mode.value,
            tail_lr_frac=tail_lr,
            min_scale=min_scale,
            scheduled_loading=scheduled_loading,
            direct_crops=direct_crops,
            max_data_wait_frac=max_data_wait,
            log_to=tuple(log_to or ()),
            prepared=prepared,
            use_prepared=use_prepared,
        )
        try:
            with RichTrainObserver(stderr) as observer:
                result = run_training(config, observer)
        except TrainingInterrupted as exc:
            code = EXIT_TERMINATED if exc.signal_name == "SIGTERM" else EXIT_INTERRUPTED
            raise fail(interrupted_message(exc), code) from None
    _print_result(result, json_out)
    _exit_for(result)


def _exit_for(result) -> None:
    """Exit 1 for a run that could not write its results or that diverged; figures are kept either way."""
    if result.write_error:
        raise fail(result.write_error)
    if result.diverged:  # one outcome for a diverged run, however it was caught: exit 1, its figures kept
        raise fail(
            f"the run diverged (its final training loss is far above chance); {result.run_dir} keeps its figures"
        )



def _print_result(result, json_out: bool) -> None:
    """The summary table, or run.json's object with --json. Warnings were shown as they happened."""
    from trdcli.cli import report
    from trdcli.run.results import run_json

    if json_out:
        print_json(run_json(result))
        return
    stdout.print(report.train_summary_table(result))
