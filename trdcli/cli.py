"""The ``trd`` command: parses options, calls train()/estimate(), renders the result, maps errors to exit codes.

No training logic lives here. torch and fastai are imported inside the commands, so
``trd --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trdcli.demo import DEMO_LOW_PX
from trdcli.presets import PRESETS
from trdcli.train import TrainConfig, one_line

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="trd",
    help="Temporally Resolution Decrement: train image classifiers on reduced-resolution steps, "
    "and see exactly what it saved.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

stdout = Console()
stderr = Console(stderr=True)

PresetName = Enum("PresetName", {name.replace("-", "_"): name for name in PRESETS}, type=str)


class ResizeMode(str, Enum):
    bilinear = "bilinear"
    bicubic = "bicubic"
    area = "area"


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """Bad input -> one red line and exit 1; TRD_DEBUG=1 shows the traceback instead."""
    try:
        yield
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("TRD_DEBUG"):
            raise
        raise fail(one_line(exc)) from None
    except (RuntimeError, MemoryError) as exc:
        if "out of memory" not in str(exc).lower() or os.environ.get("TRD_DEBUG"):
            raise
        raise fail(f"out of memory ({one_line(exc)}); lower --batch-size or --size") from None


# -- options shared by train and estimate-cost -----------------------------------------------

ArchOpt = Annotated[
    str,
    typer.Option(
        help="Model: torchvision (resnet50, convnext_tiny, efficientnet_b0, ...), fastai (xresnet50, ...) "
        "or timm/<name>."
    ),
]
LowResOpt = Annotated[
    int | None,
    typer.Option(
        "--low-res", help="Reduced resolution in px. Without it (and without --preset): the full-resolution baseline."
    ),
]
UntilOpt = Annotated[
    float | None,
    typer.Option(
        help="Decrement window: steps before this fraction of the run may be reduced (default 0.9 with --low-res)."
    ),
]
ProbOpt = Annotated[float | None, typer.Option(help="Chance that a step inside the window is reduced (default 1.0).")]
PresetOpt = Annotated[
    PresetName | None, typer.Option(help="A named schedule (see `trd presets`); explicit options override it.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the schedule's per-step draws, the data order and the model init.")]
EpochsOpt = Annotated[int, typer.Option(help="Training epochs.")]
SizeOpt = Annotated[int, typer.Option("--size", help="Full training and evaluation resolution in px.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per optimizer step.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")]


def _schedule(preset, low_res, until, prob, seed):
    from trdcli.presets import build_schedule

    return build_schedule(preset.value if preset else None, low_res, until, prob, seed)


@app.command()
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Image folder: DATA/train/<class>/* and DATA/val/<class>/*, or class folders with --valid-pct."
        ),
    ],
    arch: ArchOpt = TrainConfig.arch,
    epochs: EpochsOpt = TrainConfig.epochs,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOpt = TrainConfig.batch_size,
    lr: Annotated[
        str, typer.Option(help="Peak learning rate of the one-cycle schedule, or 'find' to run lr_find.")
    ] = str(TrainConfig.lr),
    low_res: LowResOpt = None,
    until: UntilOpt = None,
    prob: ProbOpt = None,
    preset: PresetOpt = None,
    seed: SeedOpt = 0,
    valid_pct: Annotated[
        float | None, typer.Option(help="Hold out this fraction per class for validation (class-folder layout).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loading processes (default: cores - 1, at most 8).")] = None,
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
    resize_mode: Annotated[
        ResizeMode, typer.Option(help="Antialiased filter for reduced steps.")
    ] = ResizeMode.bilinear,
    bn_recalibrate: Annotated[
        int, typer.Option(help="After training, re-estimate BatchNorm statistics on N full-resolution batches.")
    ] = 0,
    json_out: JsonOpt = False,
):
    """Train a classifier on an image folder, with TRD or any preset, and report the compute it saved."""
    from trdcli.train import TrainConfig, TrainingInterrupted
    from trdcli.train import train as run_training

    with user_errors():
        schedule = _schedule(preset, low_res, until, prob, seed)
        config = TrainConfig(
            data=data,
            arch=arch,
            epochs=epochs,
            size_px=size,
            batch_size=batch_size,
            lr=_parse_lr(lr),
            lr_find=lr.strip().lower() == "find",
            schedule=schedule,
            seed=seed,
            valid_pct=valid_pct,
            workers=workers,
            weights=weights,
            out_dir=out,
            resume=resume,
            skip_bad_images=skip_bad_images,
            check_images=check_images,
            device=device,
            resize_mode=resize_mode.value,
            bn_recalibrate=bn_recalibrate,
        )
        from trdcli.progress import RichTrainObserver

        try:
            with RichTrainObserver(stderr) as observer:
                result = run_training(config, observer)
        except TrainingInterrupted as exc:
            if exc.saved:
                hint = f"resume with the same command plus --resume {exc.run_dir}"
                raise fail(
                    f"interrupted; epochs 1-{exc.epochs_done} are saved in {exc.run_dir}: {hint}", EXIT_INTERRUPTED
                ) from None
            raise fail("interrupted before the first epoch finished; nothing to resume", EXIT_INTERRUPTED) from None
    _print_result(result, json_out)
    if result.write_error:
        raise fail(result.write_error)


def _parse_lr(text: str) -> float:
    if text.strip().lower() == "find":
        return TrainConfig.lr  # replaced by lr_find's suggestion
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"--lr must be a number or 'find', got {text!r}") from None
    return value


def _print_result(result, json_out: bool) -> None:
    from trdcli import report

    if json_out:
        sys.stdout.write(json.dumps(report.run_json(result), indent=2) + "\n")
        return
    for warning in result.warnings:
        stderr.print(f"[yellow]warning:[/] {warning}", highlight=False)
    stdout.print(report.train_summary_table(result))


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Keep the generated images and both runs here (default: a new temporary folder)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs for each of the two runs.")] = 8,
    low_res: Annotated[
        int, typer.Option("--low-res", help="The TRD run's reduced resolution (the full one is 64 px).")
    ] = DEMO_LOW_PX,
    until: Annotated[float, typer.Option(help="The TRD run's decrement window.")] = 0.9,
    prob: Annotated[float, typer.Option(help="The TRD run's reduction probability inside the window.")] = 1.0,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
):
    """Generate a small shapes dataset and train a baseline and a TRD run side by side on the CPU (about 3 minutes)."""
    from trdcli import report
    from trdcli.demo import run_demo
    from trdcli.progress import RichTrainObserver

    with user_errors(), RichTrainObserver(stderr) as observer:
        comparison = run_demo(out, epochs=epochs, seed=seed, observer=observer, low_res=low_res, until=until, prob=prob)
    if json_out:
        payload = {"baseline": report.run_json(comparison.baseline), "trd": report.run_json(comparison.trd)}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    stdout.print(
        f"Generated {comparison.train_images} training and {comparison.valid_images} validation images "
        f"in {comparison.data_dir}"
    )
    stdout.print(report.train_summary_table(comparison.baseline))
    stdout.print(report.train_summary_table(comparison.trd))
    stdout.print(report.comparison_table(comparison.baseline, comparison.trd))


class DatasetName(str, Enum):
    imagenet = "imagenet"


@app.command("estimate-cost")
def estimate_cost(
    data: Annotated[str | None, typer.Argument(help="An image folder whose images are counted (not decoded).")] = None,
    dataset: Annotated[
        DatasetName | None,
        typer.Option(help="A known dataset: imagenet = 1,281,167 train / 50,000 val, 1,000 classes."),
    ] = None,
    images: Annotated[int | None, typer.Option(help="Training images (instead of DATA or --dataset).")] = None,
    valid_images: Annotated[int | None, typer.Option(help="Validation images, for validation compute.")] = None,
    classes: Annotated[int | None, typer.Option(help="Number of classes (default: from the data, or 1000).")] = None,
    valid_pct: Annotated[
        float | None, typer.Option(help="As for `trd train`, for a DATA folder of class folders.")
    ] = None,
    arch: ArchOpt = TrainConfig.arch,
    epochs: EpochsOpt = TrainConfig.epochs,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOpt = TrainConfig.batch_size,
    low_res: LowResOpt = None,
    until: UntilOpt = None,
    prob: ProbOpt = None,
    preset: PresetOpt = None,
    seed: SeedOpt = 0,
    measure: Annotated[
        bool, typer.Option(help="Time real training steps of the model here, at each resolution.")
    ] = False,
    measure_batch: Annotated[
        int | None, typer.Option(help="Batch size for --measure (default: --batch-size, at most 16).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Device for --measure (default: the best available).")] = None,
    throughput: Annotated[str | None, typer.Option(help="Known images/s per device, e.g. 224=2600,112=9800.")] = None,
    gpu_flops: Annotated[
        float | None, typer.Option(help="Peak FLOP/s of one device (e.g. 312e12), with --utilisation.")
    ] = None,
    utilisation: Annotated[float, typer.Option(help="Share of --gpu-flops a training step sustains.")] = 0.4,
    price_per_hour: Annotated[
        float | None, typer.Option(help="Price of one device per hour, for the money column.")
    ] = None,
    devices: Annotated[int, typer.Option(help="Devices training in parallel (ideal data-parallel scaling).")] = 1,
    budget: Annotated[
        str | None, typer.Option(help="0.4 or 40% of the baseline's compute, a time (12h) or a price ($500).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Save the planned resolution per step as a PNG.")] = None,
    json_out: JsonOpt = False,
):
    """Plan a run's compute, time and money before spending it; answer budget questions."""
    from trdcli import report
    from trdcli.estimate import PlanOptions, plan

    with user_errors():
        options = PlanOptions(
            arch=arch,
            size_px=size,
            epochs=epochs,
            batch_size=batch_size,
            schedule=_schedule(preset, low_res, until, prob, seed),
            seed=seed,
            data=data,
            dataset=dataset.value if dataset else None,
            images=images,
            valid_images=valid_images,
            classes=classes,
            valid_pct=valid_pct,
            measure=measure,
            measure_batch=measure_batch,
            device=device,
            throughput=throughput,
            gpu_flops=gpu_flops,
            utilisation=utilisation,
            price_per_hour=price_per_hour,
            devices=devices,
            budget=budget,
        )
        if measure and not json_out:
            stderr.print("[dim]timing training steps at each resolution (--measure)...[/]")
        result = plan(options)
        if plot is not None:
            try:
                report.save_plan_plot(result.estimate.step_px, size, f"{arch}: {result.estimate.schedule.name}", plot)
            except OSError as exc:
                raise ValueError(f"cannot write --plot {plot}: {exc.strerror or exc}") from exc
    if json_out:
        sys.stdout.write(json.dumps(report.estimate_json(result), indent=2) + "\n")
        return
    for renderable in report.estimate_tables(result):
        stdout.print(renderable)


@app.command()
def presets(
    arch: ArchOpt = "resnet50",
    size: SizeOpt = 224,
    epochs: EpochsOpt = 90,
    batch_size: BatchOpt = 256,
    images: Annotated[
        int, typer.Option(help="Training images of the reference run (default: ImageNet-1k).")
    ] = 1_281_167,
    json_out: JsonOpt = False,
):
    """List the named schedules with their source and compute (ResNet-50, ImageNet, 90 epochs unless told)."""
    from trdcli import report
    from trdcli.presets import preset_table

    with user_errors():
        if not json_out:
            stderr.print("[dim]measuring FLOPs at each resolution the presets use (cached after the first run)...[/]")
        rows = preset_table(arch, size, epochs, batch_size, images)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    stdout.print(report.presets_table(rows, arch, size, epochs))


def main() -> None:
    # fastai's import trips torch's deprecation notice for torch.jit.script: noise for a CLI user.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    try:
        app()
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
