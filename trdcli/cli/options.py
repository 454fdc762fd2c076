"""The command line's options, each defined once (``Annotated`` types the commands share) and the
choices they offer; ``recipe_of`` and ``schedule_of`` read a command's recipe and schedule options."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from trdcli.core.defaults import (
    BN_MODES,
    BN_RECAL_VIEWS,
    DEFAULT_BN_RECAL_VIEW,
    DEFAULT_BN_RECALIBRATE_BATCHES,
    DEFAULT_PROB,
    DEFAULT_UNTIL,
)
from trdcli.core.presets import PRESETS

PresetName = Enum("PresetName", {name.replace("-", "_"): name for name in PRESETS}, type=str)


class ResizeMode(str, Enum):
    bilinear = "bilinear"
    bicubic = "bicubic"
    area = "area"


BnMode = Enum("BnMode", {mode: mode for mode in BN_MODES}, type=str)
BnRecalView = Enum("BnRecalView", {view: view for view in BN_RECAL_VIEWS}, type=str)
DEFAULT_RECAL_VIEW = BnRecalView(DEFAULT_BN_RECAL_VIEW)


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


def recipe_of(recipe, epochs, batch_size, lr, opt=None, momentum=None, wd=None, wd_norm_bias=None, lr_schedule=None,
              warmup_epochs=None, milestones=None, lr_gamma=None, label_smoothing=None, mixup=None,
              cutmix=None):  # fmt: skip
    """The command's recipe: the named one (or trd's default) with the values given, scaled to the batch."""
    from trdcli.cli.values import parse_milestones
    from trdcli.core.recipes import resolve_recipe

    return resolve_recipe(
        recipe, epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, momentum=momentum, wd=wd,
        wd_norm_bias=wd_norm_bias, lr_schedule=lr_schedule, warmup_epochs=warmup_epochs,
        milestones=parse_milestones(milestones) if milestones is not None else None, gamma=lr_gamma,
        label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix,
    )  # fmt: skip


def schedule_of(seed, preset=None, low_res=None, until=None, prob=None, prob_end=None, initial_scale=None):
    """The command's schedule: a preset with any values given, or TRD from ``low_res``, else the baseline."""
    from trdcli.core.presets import build_schedule

    name = preset.value if preset else None
    return build_schedule(name, low_res, until, prob, seed, prob_end=prob_end, initial_scale=initial_scale)


class DatasetName(str, Enum):
    imagenet = "imagenet"


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands take, defined once: a command names the group as one parameter
    (``recipe_options: dict = RECIPE_OPTIONS``) and :func:`with_option_groups` puts the group's options
    in its place, handing the command their values as one dict."""

    options: tuple[tuple[str, Any, Any], ...]  # (parameter, its Annotated type, its default)

    def parameters(self) -> list[inspect.Parameter]:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return [inspect.Parameter(name, kind, annotation=hint, default=default) for name, hint, default in self.options]


def with_option_groups(command):
    """The command as Typer reads it (its ``__signature__``), each group parameter replaced by the group's options."""
    signature = inspect.signature(command, eval_str=True)
    groups = {p.name: p.default for p in signature.parameters.values() if isinstance(p.default, OptionGroup)}
    parameters = []
    for parameter in signature.parameters.values():
        parameters += groups[parameter.name].parameters() if parameter.name in groups else [parameter]

    @functools.wraps(command)
    def run(**values):
        for name, group in groups.items():
            values[name] = {option: values.pop(option) for option, _, _ in group.options}
        return command(**values)

    run.__signature__ = signature.replace(parameters=parameters)
    return run


# How a network is optimised (trd train, trd compare): a named recipe and any of its values.
RECIPE_OPTIONS = OptionGroup(
    (
        ("recipe", RecipeOpt, None),
        ("opt", OptOpt, None),
        ("momentum", MomentumOpt, None),
        ("wd", WdOpt, None),
        ("wd_norm_bias", WdNormBiasOpt, None),
        ("lr_schedule", LrScheduleOpt, None),
        ("warmup_epochs", WarmupOpt, None),
        ("milestones", MilestonesOpt, None),
        ("lr_gamma", LrGammaOpt, None),
        ("label_smoothing", LabelSmoothingOpt, None),
        ("mixup", MixupOpt, None),
        ("cutmix", CutmixOpt, None),
    )
)
# Which size each step trains at (trd train, trd estimate-cost, trd prepare); the seed is its own option.
SCHEDULE_OPTIONS = OptionGroup(
    (
        ("low_res", LowResOpt, None),
        ("until", UntilOpt, None),
        ("prob", ProbOpt, None),
        ("prob_end", ProbEndOpt, None),
        ("initial_scale", InitialScaleOpt, None),
        ("preset", PresetOpt, None),
    )
)
