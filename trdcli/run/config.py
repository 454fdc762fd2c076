"""``TrainConfig``: everything that defines a training run, checked once, as typed values."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trdcli.core.data_wait import DEFAULT_MAX_DATA_WAIT_FRAC
from trdcli.core.defaults import (
    DEFAULT_BN_RECAL_VIEW,
    DEFAULT_MIN_SCALE,
    PRECISIONS,
    check_batchnorm_options,
    check_ema_decay,
)
from trdcli.core.errors import ConfigError, require_positive_int
from trdcli.core.lr_schedule import LRSchedule
from trdcli.core.recipes import Recipe
from trdcli.core.schedules import ConstantSchedule, ResolutionSchedule
from trdcli.trackers.interface import check_trackers

# fastai book's from-scratch one-cycle rate for Imagenette (ch. 7).
DEFAULT_LR = 3e-3


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Invalid values raise :class:`~trdcli.core.errors.ConfigError`."""

    data: Path
    arch: str = "resnet18"  # trains in minutes on a CPU at 64 px; the paper's family
    epochs: int = 5
    size_px: int = 224  # full training and evaluation resolution
    batch_size: int = 64
    # Peak one-cycle rate. None: DEFAULT_LR, or when resuming, the rate the run was using (a
    # rate given with `resume` replaces it: how a run that diverged continues more gently).
    lr: float | None = None
    lr_find: bool = False  # run fastai's lr_find at full resolution and use its valley
    # The full-resolution tail's own annealing, from this fraction of the peak rate
    # (trdcli.core.lr_schedule); None: one one-cycle over the whole run.
    tail_lr_frac: float | None = None
    schedule: ResolutionSchedule = field(default_factory=ConstantSchedule)
    # The optimizer, weight decay, learning-rate schedule and regularisation (trdcli.core.recipes).
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    valid_pct: float | None = None
    workers: int | None = None  # None: all cores but one, at most 8
    weights: Path | None = None
    out_dir: Path | None = None
    resume: Path | None = None
    skip_bad_images: bool = False
    check_images: bool = True
    device: str | None = None  # None: cuda, then mps, then cpu
    # "auto": bf16 autocast on CUDA devices that have it, fp16 on older ones, fp32 on the CPU and MPS;
    # or bf16, fp16, fp32 as asked (trdcli.run.precision, which checks the device).
    precision: str = "auto"
    # Keep an exponential moving average of the weights with this decay (trdcli.callbacks.ema); None: none.
    ema_decay: float | None = None
    # torch.compile the model in place, one static graph per (size, mode) (trdcli.run.compile), with this
    # backend: inductor, or a cheaper one (aot_eager, eager) where compile time matters more than speed.
    compile: bool = False
    compile_backend: str = "inductor"
    channels_last: bool | None = None  # None: on for CUDA only
    min_scale: float = DEFAULT_MIN_SCALE  # RandomResizedCrop's smallest area (trdcli.core.defaults)
    resize_mode: str = "bilinear"  # checked by TRDCallback (trdcli.core.resize.RESIZE_MODES), which imports torch
    # Batches at full resolution to re-estimate BatchNorm statistics after training; None: the
    # default number when any step was reduced, none for a run at full resolution throughout.
    bn_recalibrate: int | None = None
    # The images recalibration sees: the training augmentation ("train") or the test-time view ("test").
    bn_recal_view: str = DEFAULT_BN_RECAL_VIEW
    bn_mode: str = "shared"  # "private": reduced steps use their own BatchNorm copies (trdcli.callbacks.batchnorm)
    # The loader crops each batch straight to its step's size, decoding JPEGs at reduced scale
    # (trdcli.data.sized_loader); False: it delivers full size and TRDCallback resizes the batch.
    scheduled_loading: bool = True
    # Reduced steps' crops resampled straight to their size in one pass, instead of the
    # full-size crop downsampled: cheaper to load, but not the same images (docs/benchmarks.md).
    direct_crops: bool = False
    # Warn that the run is loader-bound when it waited for data longer than this share of its
    # training time (trdcli.core.data_wait).
    max_data_wait_frac: float = DEFAULT_MAX_DATA_WAIT_FRAC
    # Trackers that watch the run (trdcli.trackers.callback.TRACKERS), each writing under the run directory.
    log_to: tuple[str, ...] = ()
    # Reduced steps read a fresh `trd prepare` copy: this folder (an error if it is not fresh), or
    # by default the one beside the data (the originals, with a warning, if it is stale).
    prepared: Path | None = None
    use_prepared: bool = True

    def __post_init__(self):
        for setting in ("epochs", "size_px", "batch_size"):
            require_positive_int(setting, getattr(self, setting))
        if self.lr is not None and not (isinstance(self.lr, float | int) and 0 < self.lr < 10):
            raise ConfigError(f"`lr` must be a positive number below 10, got {self.lr!r}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"`workers` must be 0 or more, got {self.workers}")
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"`min_scale` must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.max_data_wait_frac <= 1:
            raise ConfigError(f"`max_data_wait_frac` must be a fraction in [0, 1], got {self.max_data_wait_frac}")
        check_batchnorm_options(self.bn_mode, self.bn_recalibrate, self.bn_recal_view)
        check_ema_decay(self.ema_decay)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown `precision` {self.precision!r}: one of {', '.join(PRECISIONS)}")
        if self.size_px < self.schedule.min_px:
            raise ConfigError(
                f"`size_px` {self.size_px} is below the {self.schedule.min_px} px the network needs",
            )
        self.schedule.validate(self.size_px)
        if self.schedule.has_regularisation and (self.recipe.mixup or self.recipe.cutmix):
            raise ConfigError(
                f"the {self.schedule.describe()['name']} schedule raises mixup itself, stage by stage: "
                "leave `mixup` and `cutmix` out"
            )
        check_trackers(self.log_to)
        _ = self.lr_curve  # checks the schedule against the run (milestones, warm-up) and the tail

    @property
    def peak_lr(self) -> float:
        """The peak learning rate of a new run: ``lr``, or the default."""
        return DEFAULT_LR if self.lr is None else self.lr

    @property
    def lr_curve(self) -> LRSchedule:
        """The learning rate (a fraction of the peak) over the run: the recipe's schedule, with the
        full-resolution tail's own annealing if asked."""
        return self.recipe.lr_schedule_for(self.epochs, self.schedule.full_tail_start_frac, self.tail_lr_frac)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, the schedule as its ``describe()``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ResolutionSchedule | Recipe):
                value = value.describe()
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out
