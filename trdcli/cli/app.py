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
from rich.markup import escape

from trdcli import __version__
from trdcli.cli.demo import DEMO_FULL_PX, DEMO_LOW_PX
from trdcli.core.defaults import (
    BN_MODES,
    BN_RECAL_VIEWS,
    DEFAULT_BN_RECAL_VIEW,
    DEFAULT_BN_RECALIBRATE_BATCHES,
    DEFAULT_PROB,
    DEFAULT_UNTIL,
)
from trdcli.core.errors import TRDError, one_line
from trdcli.core.presets import PRESETS
from trdcli.data.prepare import DEFAULT_QUALITY
from trdcli.run.config import DEFAULT_LR, TrainConfig
from trdcli.run.feed import DEFAULT_FEED_SAMPLE

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a job stopped by it

app = typer.Typer(
    name="trd",
    help="Temporally Resolution Decrement: train image classifiers on reduced-resolution steps, "
    "and see exactly what it saved.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _WholeRowsConsole(Console):
    """stdout and stderr. In a terminal, or with COLUMNS set, as wide as that; written to a file or a
    pipe (``trd compare ... > log``, ``nohup ... 2> log``), as wide as what it prints, so a table keeps
    its rows whole and a progress line stays one line where rich would wrap them at 80 columns."""

    def print(self, *objects, **kwargs):
        if not objects or self.is_terminal or "COLUMNS" in os.environ:
            return super().print(*objects, **kwargs)
        from rich.measure import Measurement

        wide = self.options.update(width=10_000)
        before = self._width  # print(width=) is capped at the console's width: widen the console itself
        self.width = max(80, *(Measurement.get(self, wide, o).maximum for o in objects))
        try:
            return super().print(*objects, **kwargs)
        finally:
            self.width = before


stdout = _WholeRowsConsole()
stderr = _WholeRowsConsole(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"trd {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    """Temporally Resolution Decrement: train image classifiers on reduced-resolution steps, and see exactly what
    it saved."""


PresetName = Enum("PresetName", {name.replace("-", "_"): name for name in PRESETS}, type=str)


class ResizeMode(str, Enum):
    bilinear = "bilinear"
    bicubic = "bicubic"
    area = "area"


BnMode = Enum("BnMode", {mode: mode for mode in BN_MODES}, type=str)
BnRecalView = Enum("BnRecalView", {view: view for view in BN_RECAL_VIEWS}, type=str)
DEFAULT_RECAL_VIEW = BnRecalView(DEFAULT_BN_RECAL_VIEW)


# The flag a user typed for each setting the core names in its messages.
_FLAG_NAMES = {"size_px": "--size", "max_data_wait_frac": "--max-data-wait", "gamma": "--lr-gamma"}
_SETTINGS_WITH_FLAGS = [
    "recipe",
    "precision",
    "ema",
    "compile",
    "opt",
    "momentum",
    "wd",
    "wd_norm_bias",
    "lr_schedule",
    "warmup_epochs",
    "milestones",
    "gamma",
    "label_smoothing",
    "mixup",
    "cutmix",
    "arch",
    "epochs",
    "size_px",
    "batch_size",
    "lr",
    "low_res",
    "until",
    "prob",
    "prob_end",
    "initial_scale",
    "preset",
    "seed",
    "valid_pct",
    "workers",
    "weights",
    "out",
    "resume",
    "skip_bad_images",
    "device",
    "resize_mode",
    "bn_recalibrate",
    "bn_recal_view",
    "bn_mode",
    "tail_lr",
    "min_scale",
    "scheduled_loading",
    "direct_crops",
    "max_data_wait_frac",
    "seeds",
    "setting",
    "weights",
    "cue_conflict",
    "sizes",
    "dataset",
    "images",
    "valid_images",
    "classes",
    "measure",
    "throughput",
    "gpu_flops",
    "utilisation",
    "price_per_hour",
    "devices",
    "budget",
    "family",
    "log_to",
    "wandb_project",
    "feed_sample",
    "prepared",
    "use_prepared",
    "quality",
]
FLAGS = {name: _FLAG_NAMES.get(name, "--" + name.replace("_", "-")) for name in _SETTINGS_WITH_FLAGS}


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    # escape: a message may name a path or an extra in brackets (pip install 'trdcli[tensorboard]').
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """trd's own errors -> one red line and exit 1 (TRD_DEBUG=1 shows the traceback); anything else is a bug."""
    try:
        yield
    except TRDError as exc:
        if os.environ.get("TRD_DEBUG"):
            raise
        raise fail(exc.rendered(FLAGS)) from None
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
        help="Decrement window: steps before this fraction of the run may be reduced "
        f"(default {DEFAULT_UNTIL:g}; given alone, every step in the window is reduced)."
    ),
]
ProbOpt = Annotated[
    float | None,
    typer.Option(help=f"Chance that a step inside the window is reduced (default {DEFAULT_PROB:g}; 1 with --until)."),
]
ProbEndOpt = Annotated[
    float | None,
    typer.Option(help="The chance where the window ends: it falls (or rises) linearly from --prob to this."),
]
InitialScaleOpt = Annotated[
    float | None, typer.Option(help="With --preset composer: the first scale of the ramp (Composer's 0.5).")
]
PresetOpt = Annotated[
    PresetName | None, typer.Option(help="A named schedule (see `trd presets`); explicit options override it.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the schedule's per-step draws, the data order and the model init.")]
EpochsOpt = Annotated[int, typer.Option(help="Training epochs.")]
SizeOpt = Annotated[int, typer.Option("--size", help="Full training and evaluation resolution in px.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per optimizer step.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")]
LogToOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Watch the run in a tracker (repeat): tensorboard (RUN/tensorboard/), wandb (offline unless "
        "logged in), mlflow (MLFLOW_TRACKING_URI, else RUN/mlflow.db); pip install 'trdcli[trackers]' "
        "(in a checkout: pip install -e '.[trackers]')."
    ),
]
WandbProjectOpt = Annotated[
    str | None, typer.Option(help="With --log-to wandb: the W&B project (sets WANDB_PROJECT; default trd).")
]
BnRecalibrateOpt = Annotated[
    int | None,
    typer.Option(
        help="After training, re-estimate BatchNorm statistics on N full-resolution batches "
        f"(default: {DEFAULT_BN_RECALIBRATE_BATCHES} when any step was reduced; 0: never)."
    ),
]
TailLrOpt = Annotated[
    float | None,
    typer.Option(
        help="Give the full-resolution tail (the steps from --until on) its own annealing, from this fraction "
        "of the peak rate (default: one one-cycle over the whole run, nearly zero by the tail)."
    ),
]
MinScaleOpt = Annotated[
    float, typer.Option(help="Smallest area of a training crop, as a fraction of the image (RandomResizedCrop).")
]
WorkersOpt = Annotated[int | None, typer.Option(help="Data-loading processes (default: cores - 1, at most 16).")]
PreparedOpt = Annotated[
    Path | None,
    typer.Option(help="A `trd prepare` copy for the reduced steps to read (an error if it is not fresh)."),
]
UsePreparedOpt = Annotated[
    bool,
    typer.Option(
        "--use-prepared/--no-prepared",
        help="Reduced steps read a fresh `trd prepare` copy beside the data when there is one.",
    ),
]
BnRecalViewOpt = Annotated[
    BnRecalView,
    typer.Option(
        help="The view of the training images BatchNorm is recalibrated on: the training augmentation (train) "
        "or the test-time view validation sees (test: resized, centre-cropped, unflipped; FixRes)."
    ),
]
BnModeOpt = Annotated[
    BnMode, typer.Option(help="BatchNorm on reduced steps: shared with full ones, or a private copy (RS-Nets).")
]

RecipeOpt = Annotated[
    str | None,
    typer.Option(
        help="A named recipe (see `trd recipes`: fastai, paper, torchvision-v1, ffcv-rn50, rsb-a3): its optimizer, "
        "schedule, regularisation, epochs, batch and rate (scaled to --batch-size); explicit options override it."
    ),
]
OptOpt = Annotated[
    str | None, typer.Option("--opt", help="Optimizer: sgd, adam, adamw, radam, lamb, ranger (default: adamw).")
]
MomentumOpt = Annotated[
    float | None, typer.Option(help="SGD's momentum or Adam's beta1 (default 0.9; one-cycle schedules its own).")
]
WdOpt = Annotated[float | None, typer.Option("--wd", help="Weight decay (default 0.01, decoupled for adamw).")]
WdNormBiasOpt = Annotated[
    bool | None,
    typer.Option(
        "--wd-norm-bias/--no-wd-norm-bias",
        help="Decay normalisation layers' and bias parameters too (torchvision's default); off: timm's rule.",
    ),
]
LrScheduleOpt = Annotated[
    str | None,
    typer.Option(help="one-cycle (default), cosine, step (with --milestones), linear, flat-cos or constant."),
]
WarmupOpt = Annotated[float | None, typer.Option(help="Epochs of linear warm-up (not with one-cycle).")]
MilestonesOpt = Annotated[
    str | None, typer.Option(help="With --lr-schedule step: the epochs at which the rate falls, e.g. 30,60.")
]
LrGammaOpt = Annotated[float | None, typer.Option("--lr-gamma", help="The step schedule's factor (default 0.1).")]
LabelSmoothingOpt = Annotated[float | None, typer.Option(help="Label smoothing in [0, 1) (default 0).")]
MixupOpt = Annotated[float | None, typer.Option(help="Mixup's alpha (default 0: off).")]
CutmixOpt = Annotated[float | None, typer.Option(help="CutMix's alpha (default 0: off); with --mixup, one per batch.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="auto (bf16 on CUDA devices that have it, fp16 on older ones, fp32 on the CPU and MPS), bf16, fp16 "
        "or fp32: autocast's precision; weights and optimizer state stay fp32."
    ),
]
EmaOpt = Annotated[
    float | None,
    typer.Option(
        "--ema",
        help="Keep a moving average of the weights with this decay (0.999, ...): validated beside the model, "
        "saved as model_ema.pth, recalibrated with it (trd eval --ema).",
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the model (inductor), one static graph per size and mode the run uses; run.json "
        "counts the graphs and any recompile.",
    ),
]
EpochsOrRecipeOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: the recipe's, 5).")]
BatchOrRecipeOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Images per optimizer step (default: the recipe's, 64).")
]


def _recipe(recipe, epochs, batch_size, lr, opt=None, momentum=None, wd=None, wd_norm_bias=None, lr_schedule=None,
            warmup_epochs=None, milestones=None, lr_gamma=None, label_smoothing=None, mixup=None,
            cutmix=None):  # fmt: skip
    from trdcli.cli.values import parse_milestones
    from trdcli.core.recipes import resolve_recipe

    return resolve_recipe(
        recipe, epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, momentum=momentum, wd=wd,
        wd_norm_bias=wd_norm_bias, lr_schedule=lr_schedule, warmup_epochs=warmup_epochs,
        milestones=parse_milestones(milestones) if milestones is not None else None, gamma=lr_gamma,
        label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix,
    )  # fmt: skip


def _schedule(preset, low_res, until, prob, seed, prob_end, initial_scale):
    from trdcli.core.presets import build_schedule

    name = preset.value if preset else None
    return build_schedule(name, low_res, until, prob, seed, prob_end=prob_end, initial_scale=initial_scale)


@app.command()
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
    recipe: RecipeOpt = None,
    opt: OptOpt = None,
    momentum: MomentumOpt = None,
    wd: WdOpt = None,
    wd_norm_bias: WdNormBiasOpt = None,
    lr_schedule: LrScheduleOpt = None,
    warmup_epochs: WarmupOpt = None,
    milestones: MilestonesOpt = None,
    lr_gamma: LrGammaOpt = None,
    label_smoothing: LabelSmoothingOpt = None,
    mixup: MixupOpt = None,
    cutmix: CutmixOpt = None,
    low_res: LowResOpt = None,
    until: UntilOpt = None,
    prob: ProbOpt = None,
    prob_end: ProbEndOpt = None,
    initial_scale: InitialScaleOpt = None,
    preset: PresetOpt = None,
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
        _quiet_unless_main()
    _use_wandb_project(wandb_project)
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.cli.values import parse_lr
    from trdcli.core.errors import TrainingInterrupted
    from trdcli.run.train import train as run_training

    try:
        peak_lr = parse_lr(lr) if lr is not None else None
    except TRDError as exc:  # a malformed value is a usage error (exit 2), like --epochs two
        raise typer.BadParameter(exc.rendered(FLAGS)) from None
    with user_errors():
        chosen = _recipe(recipe, epochs, batch_size, peak_lr, opt, momentum, wd, wd_norm_bias, lr_schedule,
                         warmup_epochs, milestones, lr_gamma, label_smoothing, mixup, cutmix)  # fmt: skip
        config = TrainConfig(
            data=data,
            arch=arch,
            epochs=chosen.epochs,
            size_px=size,
            batch_size=chosen.batch_size,
            lr=chosen.lr if lr is None or peak_lr is not None else None,
            lr_find=lr is not None and peak_lr is None,
            recipe=chosen.recipe,
            schedule=_schedule(preset, low_res, until, prob, seed, prob_end, initial_scale),
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
            raise fail(_interrupted_message(exc), code) from None
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


def _interrupted_message(exc) -> str:
    how = "stopped by SIGTERM (preempted)" if exc.signal_name == "SIGTERM" else "interrupted"
    if not exc.saved:
        return f"{how} before the first epoch finished; nothing to resume"
    hint = f"resume with the same command plus --resume {exc.run_dir}"
    return f"{how}; epochs 1-{exc.epochs_done} are saved in {exc.run_dir}: {hint}"


def _print_result(result, json_out: bool) -> None:
    """The summary table, or run.json's object with --json. Warnings were shown as they happened."""
    from trdcli.cli import report
    from trdcli.run.results import run_json

    if json_out:
        _print_json(run_json(result))
        return
    stdout.print(report.train_summary_table(result))


def _print_json(payload) -> None:
    if not stdout.quiet:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def _use_wandb_project(project: str | None) -> None:
    """W&B reads its project from the environment, as `wandb.init` documents; the flag sets it."""
    if project is not None:
        os.environ["WANDB_PROJECT"] = project


def _quiet_unless_main() -> None:
    """Under torchrun every rank runs this command; rank 0 alone prints (progress, result, errors)."""
    from trdcli.run.distributed import launch_ranks

    if not launch_ranks().is_main:
        stdout.quiet = stderr.quiet = True
        warnings.simplefilter("ignore")


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Keep the generated images and both runs here (default: a new temporary folder)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs for each of the two runs.")] = 8,
    low_res: Annotated[
        int, typer.Option("--low-res", help=f"The TRD run's reduced resolution (the full one is {DEMO_FULL_PX} px).")
    ] = DEMO_LOW_PX,
    until: Annotated[
        float | None, typer.Option(help="The TRD run's decrement window, read as trd train reads --until.")
    ] = None,
    prob: Annotated[
        float | None, typer.Option(help="The TRD run's reduction probability, read as trd train reads --prob.")
    ] = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
):
    """Train a baseline and TRD side by side on generated shapes whose texture is a training shortcut (~3 min, CPU)."""
    from trdcli.cli import report
    from trdcli.cli.demo import run_demo
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.run.results import run_json

    with user_errors(), RichTrainObserver(stderr) as observer:
        comparison = run_demo(out, epochs=epochs, seed=seed, observer=observer, low_res=low_res, until=until, prob=prob)
    if json_out:
        biases = {"baseline": comparison.baseline_shape_bias, "trd": comparison.trd_shape_bias}
        runs = {"baseline": comparison.baseline, "trd": comparison.trd}
        _print_json({
            label: {**run_json(run), "shape_bias": biases[label].shape_bias,
                    "shape_bias_ci95": list(biases[label].shape_bias_ci95)}
            for label, run in runs.items()
        })  # fmt: skip
        return
    stdout.print(
        f"Generated {comparison.train_images} training and {comparison.valid_images} validation images "
        f"in {comparison.data_dir}: each shape wears its class's fine stripes in 90% of the training images, "
        "random stripes in validation, another class's in the conflict split",
        highlight=False,
    )
    stdout.print(report.train_summary_table(comparison.baseline))
    stdout.print(report.train_summary_table(comparison.trd))
    stdout.print(
        report.comparison_table(
            comparison.baseline,
            comparison.trd,
            shape_biases=(comparison.baseline_shape_bias, comparison.trd_shape_bias),
        )
    )
    stdout.print(
        report.demo_reading(
            comparison.baseline, comparison.trd, (comparison.baseline_shape_bias, comparison.trd_shape_bias)
        ),
        highlight=False,
    )


class DatasetName(str, Enum):
    imagenet = "imagenet"


@app.command()
def prepare(
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="The image folder `trd train` will read, as for trd train.")
    ],
    size: SizeOpt = TrainConfig.size_px,
    low_res: LowResOpt = None,
    until: UntilOpt = None,
    prob: ProbOpt = None,
    prob_end: ProbEndOpt = None,
    initial_scale: InitialScaleOpt = None,
    preset: PresetOpt = None,
    seed: SeedOpt = 0,
    epochs: EpochsOpt = TrainConfig.epochs,
    batch_size: BatchOpt = TrainConfig.batch_size,
    valid_pct: Annotated[float | None, typer.Option(help="As for `trd train`.")] = None,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the copy (default: beside the data, <data>-trd-<px>px).")
    ] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality of the resized copies.")] = DEFAULT_QUALITY,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
):
    """Copy the training images at the size reduced steps need, so they decode in a fraction of the time.

    Give the schedule options of the trd train run: the copy covers its largest reduced size at full
    detail for every crop it can draw. trd train then reads it for reduced steps by itself. A rerun
    continues where a stopped one ended.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trdcli.data.loaders import default_workers
    from trdcli.data.prepare import prepare_for_run

    with user_errors():
        schedule = _schedule(preset, low_res, until, prob, seed, prob_end, initial_scale)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=stderr, disable=json_out) as bar:
            # Listing and checking the folder comes first; the count of images to prepare follows.
            task = bar.add_task("listing the images", total=None)
            settings, result = prepare_for_run(
                data, size, schedule, epochs, batch_size, min_scale, valid_pct=valid_pct, seed=seed, out_dir=out,
                quality=quality, workers=default_workers() if workers is None else workers,
                trd_version=__version__,
                progress=lambda done, total: bar.update(task, description="preparing", completed=done, total=total),
            )  # fmt: skip
    payload = {
        "out_dir": str(result.out_dir), "reduced_px": settings.reduced_px, "min_scale": settings.min_scale,
        "quality": settings.quality, "written": result.written, "already": result.already, "kept": result.kept,
        "source_bytes": result.source_bytes, "copy_bytes": result.copy_bytes,
    }  # fmt: skip
    if json_out:
        _print_json(payload)
        return
    share = result.copy_bytes / result.source_bytes if result.source_bytes else 1.0
    stdout.print(
        f"{result.written + result.already:,} training images in {result.out_dir} ({result.written:,} written now, "
        f"{result.already:,} already there, {result.kept:,} kept at their own size): {share:.0%} of the originals' "
        f"bytes, for reduced steps up to {settings.reduced_px} px with crops from {settings.min_scale:g} of the "
        "image. trd train reads it for its reduced steps.",
        highlight=False,
    )


@app.command("estimate-cost")
def estimate_cost(
    data: Annotated[
        Path | None,
        typer.Argument(
            metavar="DATA",
            help="An image folder: its images are counted, and a sample times the loader (the feed check).",
        ),
    ] = None,
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
    epochs: EpochsOrRecipeOpt = None,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOrRecipeOpt = None,
    recipe: Annotated[
        str | None, typer.Option(help="Plan a named recipe's epochs and batch (see `trd recipes`); options override.")
    ] = None,
    low_res: LowResOpt = None,
    until: UntilOpt = None,
    prob: ProbOpt = None,
    prob_end: ProbEndOpt = None,
    initial_scale: InitialScaleOpt = None,
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
        float | None,
        typer.Option(help="Peak FLOP/s of one device (e.g. 312e12); utilisation from NVIDIA's published figures."),
    ] = None,
    utilisation: Annotated[
        str | None,
        typer.Option(help="Share of --gpu-flops a step sustains: 0.19, or per resolution 224=0.19,112=0.12."),
    ] = None,
    price_per_hour: Annotated[
        float | None, typer.Option(help="Price of one device per hour, for the money column.")
    ] = None,
    devices: Annotated[int, typer.Option(help="Devices training in parallel (ideal data-parallel scaling).")] = 1,
    budget: Annotated[
        str | None, typer.Option(help="0.4 or 40% of the baseline's compute, a time (12h) or a price ($500).")
    ] = None,
    bn_recalibrate: Annotated[
        int | None,
        typer.Option(
            help="BatchNorm recalibration after the run, in batches, as `trd train` takes it; its forward passes "
            f"count (default: {DEFAULT_BN_RECALIBRATE_BATCHES} when any step is reduced; 0 for a model without "
            "BatchNorm)."
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Save the planned resolution per step as a PNG.")] = None,
    feed_sample: Annotated[
        int,
        typer.Option(
            help="With DATA: time trd's training loader on this many of its images at each resolution the "
            "schedule uses, and with a throughput say how many workers keep a device fed (0: skip)."
        ),
    ] = DEFAULT_FEED_SAMPLE,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    prepared: PreparedOpt = None,
    use_prepared: UsePreparedOpt = TrainConfig.use_prepared,
    json_out: JsonOpt = False,
):
    """Plan a run's compute, time and money before spending it; answer budget questions."""
    from trdcli.cli import report
    from trdcli.cli.values import parse_budget, parse_throughput
    from trdcli.plan.estimate import PlanOptions, plan
    from trdcli.run.results import plan_json
    from trdcli.run.throughput import Throughput

    with user_errors():
        chosen = _recipe(recipe, epochs, batch_size, None)  # the recipe's epochs and batch, nothing else
        options = PlanOptions(
            arch=arch,
            size_px=size,
            epochs=chosen.epochs,
            batch_size=chosen.batch_size,
            schedule=_schedule(preset, low_res, until, prob, seed, prob_end, initial_scale),
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
            throughput=Throughput(parse_throughput(throughput), "given with --throughput") if throughput else None,
            gpu_rate=_gpu_rate(gpu_flops, utilisation, size),
            price_per_hour=price_per_hour,
            devices=devices,
            budget=parse_budget(budget) if budget is not None else None,
            bn_recalibrate=bn_recalibrate,
            feed_sample=feed_sample,
            prepared=prepared,
            use_prepared=use_prepared,
            min_scale=min_scale,
        )
        if data is not None and feed_sample and not json_out:
            stderr.print(f"[dim]timing the loader at each resolution on up to {feed_sample} of the images...[/]")
        if measure and not json_out:
            stderr.print("[dim]timing training steps at each resolution (--measure)...[/]")
        result = plan(options)
        if plot is not None:
            _save_plan_plot(result, plot)
    if json_out:
        _print_json(plan_json(result))
        return
    for renderable in report.estimate_tables(result):
        stdout.print(renderable)


def _gpu_rate(gpu_flops: float | None, utilisation: str | None, size_px: int):
    from trdcli.cli.values import parse_utilisation
    from trdcli.core.errors import ConfigError
    from trdcli.plan.estimate import GpuRate

    if gpu_flops is None:
        if utilisation is not None:
            raise ConfigError("`utilisation` is a share of `gpu_flops`: give both")
        return None
    return GpuRate(gpu_flops, parse_utilisation(utilisation, size_px) if utilisation is not None else None)


def _save_plan_plot(result, path: Path) -> None:
    from trdcli.run.plots import save_plan_plot

    estimate = result.estimate
    try:
        save_plan_plot(
            estimate.profile,
            estimate.shape.total_steps,
            estimate.shape.full_px,
            f"{estimate.arch}: {estimate.schedule.name}",
            path,
        )
    except OSError as exc:
        raise TRDError(f"cannot write --plot {path}: {exc.strerror or exc}") from exc


@app.command()
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
    recipe: RecipeOpt = None,
    opt: OptOpt = None,
    momentum: MomentumOpt = None,
    wd: WdOpt = None,
    wd_norm_bias: WdNormBiasOpt = None,
    lr_schedule: LrScheduleOpt = None,
    warmup_epochs: WarmupOpt = None,
    milestones: MilestonesOpt = None,
    lr_gamma: LrGammaOpt = None,
    label_smoothing: LabelSmoothingOpt = None,
    mixup: MixupOpt = None,
    cutmix: CutmixOpt = None,
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

    _use_wandb_project(wandb_project)
    with user_errors():
        chosen = _recipe(recipe, epochs, batch_size, lr, opt, momentum, wd, wd_norm_bias, lr_schedule, warmup_epochs,
                         milestones, lr_gamma, label_smoothing, mixup, cutmix)  # fmt: skip
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
            message = f"{_interrupted_message(exc).split(';')[0]}; finished runs are kept in {out}"
            raise fail(f"{message}: rerun the same command to go on", code) from None
    if json_out:
        _print_json(compare_json(compared))
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


@app.command("eval")
def eval_command(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A `trd train` run directory; or, with --weights, the image folder (DATA)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Argument(metavar="DATA", help="Image folder to evaluate on (default: the folder the run trained on)."),
    ] = None,
    arch: Annotated[str | None, typer.Option(help="With --weights: the model's architecture.")] = None,
    weights: Annotated[Path | None, typer.Option(help="A model trained elsewhere: its local state dict.")] = None,
    size: Annotated[int | None, typer.Option("--size", help="With --weights: the model's training size in px.")] = None,
    sizes: Annotated[
        str | None, typer.Option(help="Test sizes in px, e.g. 112,160,224 (default: 0.5 to 1.15 of the training size).")
    ] = None,
    bn_recalibrate: Annotated[
        int,
        typer.Option(
            "--bn-recalibrate",
            "--recalibrate-bn",  # its name before trd train's --bn-recalibrate named the same thing
            help="Re-estimate BatchNorm on N batches at each test size first (FixRes).",
        ),
    ] = 0,
    probes: Annotated[bool, typer.Option(help="Run the shape and texture probes at the training size.")] = True,
    ema: Annotated[
        bool,
        typer.Option("--ema", help="Examine the run's moving average of the weights (model_ema.pth), into RUN/ema/."),
    ] = False,
    cue_conflict: Annotated[
        Path | None,
        typer.Option(help="Folder of Geirhos et al.'s cue-conflict stimuli, for ImageNet-1k models (docs/eval.md)."),
    ] = None,
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best available).")] = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
):
    """Measure a trained network: accuracy across test sizes with inference FLOPs, and reliance on shape vs texture."""
    from trdcli.cli import report
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.cli.values import parse_sizes
    from trdcli.evaluate.evaluation import EvalConfig, eval_json, evaluate

    with user_errors():
        config = EvalConfig(
            run_dir=None if weights else target, data=target if weights else data, arch=arch, weights=weights,
            size_px=size, sizes_px=parse_sizes(sizes) if sizes else None, bn_recalibrate=bn_recalibrate,
            probes=probes, cue_conflict=cue_conflict, batch_size=batch_size, workers=workers, device=device,
            seed=seed, ema=ema,
        )  # fmt: skip
        with RichTrainObserver(stderr) as observer:
            result = evaluate(config, observer)
    if json_out:
        _print_json(eval_json(result))
    else:
        for renderable in report.eval_tables(result):
            stdout.print(renderable)
    if result.write_error:
        raise fail(result.write_error)


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
    from trdcli.cli import report
    from trdcli.plan.estimate import preset_table

    with user_errors():
        if not json_out:
            stderr.print("[dim]measuring FLOPs at each resolution the presets use (cached after the first run)...[/]")
        rows = preset_table(arch, size, epochs, batch_size, images)
    for row in rows:
        row["overridable"] = [FLAGS[name] for name in row["overridable"]]
    if json_out:
        _print_json(rows)
        return
    stdout.print(report.presets_table(rows, arch, size, epochs))


@app.command()
def recipes(json_out: JsonOpt = False):
    """List the named recipes (--recipe NAME) with their values, their sources and what trd leaves out of them."""
    from trdcli.cli import report
    from trdcli.core.recipes import RECIPES

    rows = [named.describe() for named in RECIPES.values()]
    if json_out:
        _print_json(rows)
        return
    stdout.print(report.recipes_table(rows))


def main() -> None:
    # fastai's import trips torch's deprecation notice for torch.jit.script: noise for a CLI user.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    try:
        app()
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
