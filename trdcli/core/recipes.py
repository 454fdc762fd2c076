"""How a network is optimised, as one options object (:class:`Recipe`), and the named recipes trd can
run with their sources (:data:`RECIPES`). Torch-free: a recipe is checked, printed and planned without
importing torch; ``trdcli.run.optim`` turns one into fastai's optimizer, loss and callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from trdcli.core.errors import ConfigError
from trdcli.core.lr_schedule import (
    WARMUP_START_FRAC,
    Constant,
    Cosine,
    FlatCos,
    Linear,
    LRSchedule,
    OneCycle,
    Step,
    TailAnnealed,
)

# fastai's optimizers by the names torch and timm users know them (fastai.optimizer). "adam" couples
# the weight decay to the gradient as torch.optim.Adam does, "adamw" decouples it (fastai's Adam
# default, torch.optim.AdamW); "sgd" couples it, as torch.optim.SGD and every ImageNet SGD recipe do.
OPTIMIZERS = ("sgd", "adam", "adamw", "radam", "lamb", "ranger")
LR_SCHEDULES = ("one-cycle", "cosine", "step", "linear", "flat-cos", "constant")


@dataclass(frozen=True)
class Recipe:
    """The optimizer, its weight decay, the learning-rate schedule and the regularisation of a run.

    The defaults are trd's own (the ``fastai`` recipe): fastai's Adam with decoupled weight decay
    0.01 under one-cycle, as ``Learner.fit_one_cycle`` runs it. ``wd_norm_bias`` False leaves every
    parameter of one dimension (normalisation layers' weights and biases, every bias) undecayed, as
    timm does and torchvision's ``--norm-weight-decay 0``; True decays them too (torchvision's default).
    """

    opt: str = "adamw"
    momentum: float | None = None  # SGD's momentum, Adam's beta1; None: 0.9 (ranger: 0.95), or one-cycle's curve
    wd: float = 0.01
    wd_norm_bias: bool = False
    lr_schedule: str = "one-cycle"
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = ()  # epochs at which the step schedule multiplies the rate by gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    mixup: float = 0.0  # the Beta distribution's alpha; 0: off
    cutmix: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC  # not an option: FFCV's ramp starts at 1e-4 of the peak
    name: str = "fastai"  # the named recipe these values started from (RECIPES), options given on top

    def __post_init__(self):
        if self.opt not in OPTIMIZERS:
            raise ConfigError(f"unknown `opt` {self.opt!r}: one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown `lr_schedule` {self.lr_schedule!r}: one of {', '.join(LR_SCHEDULES)}")
        if not self.wd >= 0:
            raise ConfigError(f"`wd` must be 0 or more, got {self.wd!r}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"`momentum` must be in [0, 1), got {self.momentum!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing!r}")
        for name in ("mixup", "cutmix", "warmup_epochs"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"`{name}` must be 0 or more, got {getattr(self, name)!r}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"`gamma` must be in (0, 1], got {self.gamma!r}")
        if self.lr_schedule == "one-cycle" and (self.warmup_epochs or self.momentum is not None):
            what = "`warmup_epochs`" if self.warmup_epochs else "`momentum`"
            raise ConfigError(
                f"{what} does not apply to one-cycle, which warms up over its first 25% and schedules momentum "
                "0.95 -> 0.85 -> 0.95 itself: choose another `lr_schedule` (cosine, step, linear, ...)"
            )
        if self.lr_schedule == "step" and not self.milestones:
            raise ConfigError("the step schedule needs `milestones`, the epochs at which the rate falls (e.g. 30,60)")
        if self.milestones and self.lr_schedule != "step":
            raise ConfigError(f"`milestones` are the step schedule's, not {self.lr_schedule}'s")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m <= 0 for m in self.milestones):
            raise ConfigError(f"`milestones` must be increasing epochs above 0, got {list(self.milestones)}")

    def check_run(self, epochs: int) -> None:
        """What depends on the run's length: milestones and the warm-up inside it."""
        if self.milestones and self.milestones[-1] >= epochs:
            raise ConfigError(f"`milestones` {self.milestones[-1]:g} is past the run's end ({epochs} epochs)")
        if self.warmup_epochs >= epochs:
            raise ConfigError(f"`warmup_epochs` {self.warmup_epochs:g} is not shorter than the run ({epochs} epochs)")

    def lr_schedule_for(
        self, epochs: int, tail_start_frac: float = 1.0, tail_lr_frac: float | None = None
    ) -> LRSchedule:
        """The rate (a fraction of the peak) at each point of a run of ``epochs``, with the TRD tail's own
        annealing from ``tail_lr_frac`` if asked."""
        self.check_run(epochs)
        if self.lr_schedule == "one-cycle":
            return OneCycle(tail_start_frac=tail_start_frac, tail_lr_frac=tail_lr_frac)
        main = self._main_schedule(epochs)
        if tail_lr_frac is None:
            return main
        OneCycle(tail_start_frac=tail_start_frac, tail_lr_frac=tail_lr_frac)  # the tail's own checks
        end = main.lr_frac_at(1.0)
        if end >= tail_lr_frac:
            raise ConfigError(
                f"`tail_lr` {tail_lr_frac:g} anneals the full-resolution tail down to where the {self.lr_schedule} "
                f"schedule ends ({end:g} of the peak), which is not below it: give a higher `tail_lr`, or leave it out"
            )
        return TailAnnealed(main, tail_start_frac, tail_lr_frac)

    def _main_schedule(self, epochs: int):
        warm = {"warmup_frac": self.warmup_epochs / epochs, "warmup_start_frac": self.warmup_start_frac}
        if self.lr_schedule == "cosine":
            return Cosine(**warm)
        if self.lr_schedule == "step":
            return Step(tuple(m / epochs for m in self.milestones), self.gamma, **warm)
        if self.lr_schedule == "linear":
            return Linear(**warm)
        if self.lr_schedule == "flat-cos":
            return FlatCos(**warm)
        return Constant(**warm)

    def describe(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class NamedRecipe:
    """A recipe as its source states it: the run's length, batch and rate with the options."""

    recipe: Recipe
    epochs: int
    batch_size: int  # the global batch the source trains with
    lr: float  # the peak rate at ``batch_size``; trd scales it linearly to the run's batch
    source: str
    reported: str  # the accuracy the source reports, and where
    left_out: tuple[str, ...] = ()  # what the source does that trd does not, said rather than dropped
    note: str = ""

    @property
    def name(self) -> str:
        return self.recipe.name

    def lr_at(self, batch_size: int) -> float:
        """The peak rate for a run of ``batch_size`` images a step: linear scaling (Goyal et al. 2017)."""
        return self.lr * batch_size / self.batch_size

    def describe(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("name", "epochs", "batch_size", "lr", "source", "reported", "note")}
        return out | {"left_out": list(self.left_out), "options": self.recipe.describe()}


RECIPES: dict[str, NamedRecipe] = {
    r.name: r
    for r in (
        NamedRecipe(
            Recipe(),
            epochs=5,
            batch_size=64,
            lr=3e-3,
            source="fastai's Learner.fit_one_cycle defaults (fastai/callback/schedule.py, fastai/optimizer.py), "
            "the rate of fastbook ch. 7 for Imagenette from scratch",
            reported="trd's default; its own figures are in docs/method.md",
            note="the rate is not scaled with the batch: trd's default rate at every batch, as before",
        ),
        NamedRecipe(
            Recipe(
                name="paper",
                opt="sgd",
                momentum=0.9,
                wd=1e-4,
                wd_norm_bias=True,
                lr_schedule="step",
                milestones=(75, 150, 225),
            ),
            epochs=300,
            batch_size=256,
            lr=0.1,
            source="inferred: the ResNet-50 ImageNet baseline of CutMix-PyTorch (clovaai/CutMix-PyTorch, train.py "
            "defaults), whose 76.32% the TRD paper (Xie et al., arXiv 2112.00954, Table 1) reports as its baseline",
            reported="ResNet-50 ImageNet top-1 76.32% (the TRD paper's baseline; TRD 77.71% at 33% of the compute)",
            note="the paper says only 'the standard procedure'; these values are CutMix-PyTorch's, inferred from the "
            "matching baseline",
        ),
        NamedRecipe(
            Recipe(
                name="torchvision-v1",
                opt="sgd",
                momentum=0.9,
                wd=1e-4,
                wd_norm_bias=True,
                lr_schedule="step",
                milestones=(30, 60),
            ),
            epochs=90,
            batch_size=256,
            lr=0.1,
            source="pytorch/vision references/classification/train.py defaults (8 GPUs x 32 images, lr 0.1, "
            "momentum 0.9, wd 1e-4 on every parameter, StepLR every 30 epochs by 0.1)",
            reported="ResNet-50 ImageNet top-1 76.13% (torchvision's ResNet50_Weights.IMAGENET1K_V1)",
        ),
        NamedRecipe(
            Recipe(
                name="ffcv-rn50",
                opt="sgd",
                momentum=0.9,
                wd=1e-4,
                lr_schedule="linear",
                warmup_epochs=2,
                label_smoothing=0.1,
                warmup_start_frac=1e-4,
            ),
            epochs=88,
            batch_size=4096,
            lr=1.7,
            source="libffcv/ffcv-imagenet rn50_configs/rn50_88_epochs.yaml (lr 1.7, batch_size 512 on each of 8 "
            "processes, SGD 0.9, wd 1e-4 off BatchNorm, label smoothing 0.1) and train_imagenet.py's get_cyclic_lr "
            "(1e-4 of the peak at epoch 0, the peak at epoch 2, 0 at the end); rn50_16_epochs.yaml is the same at 16",
            reported="ResNet-50 ImageNet top-1 78.4% at 88 epochs, 73.8% at 16 (ffcv-imagenet README, 8 x A100)",
            left_out=(
                "BlurPool (use_blurpool: 1)",
                "progressive resizing 160 -> 192 px over epochs 65-76 (trd's `ffcv` preset is that ramp)",
                "validation at 256 px with flip test-time augmentation",
                "FFCV excludes only BatchNorm from weight decay; trd excludes every bias too",
            ),
            note="the global batch 4096 assumes FFCV's batch_size is per process, as its distributed loader takes it",
        ),
        NamedRecipe(
            Recipe(name="rsb-a3", opt="lamb", wd=0.02, lr_schedule="cosine", warmup_epochs=5, mixup=0.1, cutmix=1.0),
            epochs=100,
            batch_size=2048,
            lr=8e-3,
            source="ResNet strikes back (Wightman, Touvron and Jegou, arXiv 2110.00476), Table 1, procedure A3: "
            "LAMB, lr 8e-3 at batch 2048, wd 0.02, cosine with 5 warm-up epochs, mixup 0.1, cutmix 1.0",
            reported="ResNet-50 ImageNet top-1 78.1% trained at 160 px, tested at 224 px (arXiv 2110.00476, Table 1)",
            left_out=(
                "binary cross-entropy loss (trd trains with cross-entropy)",
                "RandAugment rand-m6-mstd0.5",
                "testing at 224 px after training at 160 px (train with size 160, then evaluate at 224 with trd eval)",
                "timm's mixup/cutmix switch and label mixing details beyond an even choice per batch",
            ),
        ),
    )
}
DEFAULT_RECIPE = "fastai"


def named_recipe(name: str) -> NamedRecipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown `recipe` {name!r}: one of {', '.join(RECIPES)} (trd recipes lists them)")
    return RECIPES[name]


def with_overrides(recipe: Recipe, **given: Any) -> Recipe:
    """``recipe`` with each option given (not None) in place of its value: explicit options win. Options that
    belong to one schedule go with it: a new `lr_schedule` drops the old one's milestones and warm-up."""
    given = {k: v for k, v in given.items() if v is not None}
    if given.get("lr_schedule", recipe.lr_schedule) != recipe.lr_schedule:
        given = {"milestones": (), "warmup_epochs": 0.0, "warmup_start_frac": WARMUP_START_FRAC} | given
    return replace(recipe, **given)


@dataclass(frozen=True)
class ResolvedRecipe:
    """What a command runs: the recipe's options, and the run's length, batch and peak rate."""

    recipe: Recipe
    epochs: int
    batch_size: int
    lr: float | None  # None: trd's default rate (or, resuming, the run's own)


def resolve_recipe(
    name: str | None, *, epochs: int | None, batch_size: int | None, lr: float | None, **options: Any
) -> ResolvedRecipe:
    """The named recipe (trd's default without one) with every option given in place of its value.

    Its rate is scaled linearly to the batch where none is given (the default recipe's is trd's fixed
    default). Run for other epochs than its source's, a recipe keeps its shape: its milestones and
    warm-up scale with the epochs, as FFCV stretches its schedules to each length (Li et al. 2020,
    "Budgeted training").
    """
    named = named_recipe(name or DEFAULT_RECIPE)
    batch_size = named.batch_size if batch_size is None else batch_size
    if lr is None and named.name != DEFAULT_RECIPE:
        lr = named.lr_at(batch_size)
    recipe = named.recipe
    if epochs is not None and epochs > 0 and epochs != named.epochs:
        stretch = epochs / named.epochs
        recipe = replace(
            recipe,
            milestones=tuple(round(m * stretch, 6) for m in recipe.milestones),
            warmup_epochs=round(recipe.warmup_epochs * stretch, 6),
        )
    epochs = named.epochs if epochs is None else epochs
    return ResolvedRecipe(with_overrides(recipe, **options), epochs, batch_size, lr)
