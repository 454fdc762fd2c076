"""Resolution schedules: which resolution does training step ``t`` of ``T`` use.

Every schedule is a small stateless object. The step is passed in, never counted inside
(timm's rule for schedulers), so a resumed run, or any process of a distributed run, asks
the same question and gets the same answer. Progress is always ``step / total_steps``,
counted in optimizer steps over the whole run (docs/method.md, "The three parameters").

All schedules share one interface, :class:`ResolutionSchedule`, so the callback, the cost
model and the CLI take any of them. The named presets built on these classes live in
:mod:`trdcli.core.presets`.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from trdcli.core.defaults import trd_reading
from trdcli.core.errors import ConfigError, is_int, require_positive_int

MIN_PX = 32
"""Smallest training resolution trd accepts unless told otherwise. ResNet, RegNet, ConvNeXt,
MobileNet and EfficientNet downsample by 32, so below 32 px their last stage sees less than
one pixel of real input and the network no longer produces a meaningful feature map."""


def _check_step(step: int, total_steps: int) -> None:
    if not is_int(total_steps) or total_steps < 1:
        raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not is_int(step) or not 0 <= step < total_steps:
        raise ConfigError(f"step must be an integer in [0, {total_steps}), got {step!r}")


def _check_range(start: int, stop: int, total_steps: int) -> None:
    _check_step(0, total_steps)
    if not (is_int(start) and is_int(stop) and 0 <= start <= stop <= total_steps):
        raise ConfigError(f"need 0 <= start <= stop <= total_steps={total_steps}, got {start!r} and {stop!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_full_px(full_px: int, min_px: int) -> None:
    if not is_int(full_px) or full_px < min_px:
        raise ConfigError(f"full resolution must be an integer of at least {min_px} px, got {full_px!r}")


def _scaled_px(full_px: int, scale: float) -> int:
    return int(round(full_px * scale))


def _check_low_size(low_res: int | None, low_scale: float | None, min_px: int) -> tuple[int | None, float | None]:
    """Validate a low resolution given either in px or as a fraction of the full one."""
    if (low_res is None) == (low_scale is None):
        raise ConfigError(
            "give exactly one of low_res (px) or low_scale (fraction), "
            f"got low_res={low_res!r}, low_scale={low_scale!r}"
        )
    require_positive_int("min_px", min_px)
    if low_res is not None:
        if not is_int(low_res) or low_res < 1:
            raise ConfigError(f"`low_res` must be a positive integer number of px, got {low_res!r}")
        if low_res < min_px:
            raise ConfigError(
                f"`low_res`={low_res} px is too small: the network needs at least {min_px} px to produce a feature map",
            )
        return int(low_res), None
    if not _is_real(low_scale) or not 0 < low_scale < 1:
        raise ConfigError(f"low_scale must be a fraction in (0, 1), got {low_scale!r}")
    return None, float(low_scale)


def _low_px(low_res: int | None, low_scale: float | None, full_px: int, min_px: int) -> int:
    """The low resolution at ``full_px``; raises unless it is in [min_px, full_px)."""
    _check_full_px(full_px, min_px)
    low = low_res if low_res is not None else _scaled_px(full_px, low_scale)
    if low >= full_px:
        what = f"`low_res`={low}" if low_res is not None else f"low_scale={low_scale} gives {low} px, which"
        raise ConfigError(f"{what} must be below the full training resolution of {full_px} px")
    if low < min_px:
        raise ConfigError(
            f"low_scale={low_scale} gives {low} px at a full resolution of {full_px} px: the network "
            f"needs at least {min_px} px"
        )
    return low


# SplitMix64 (Steele, Lea & Flood 2014): a counter-based generator, so the draw for a step is a
# pure function of (seed, step) and needs no state carried between steps or processes.
_MASK64 = (1 << 64) - 1
_GOLDEN64 = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def step_uniforms(seed: int, steps: np.ndarray | int) -> np.ndarray:
    """A uniform number in [0, 1) for each step, a pure function of ``(seed, step)``.

    This is the stream a SplitMix64 generator seeded with ``mix(seed)`` would produce, read
    at position ``step``: independent of how many steps were asked for before.
    """
    steps_u64 = np.atleast_1d(np.asarray(steps, dtype=np.int64)).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix64(np.array([seed & _MASK64], dtype=np.uint64))[0]
        z = _mix64(key + (steps_u64 + np.uint64(1)) * _GOLDEN64)
    # The top 53 bits make an exactly representable double in [0, 1).
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class ResolutionSchedule(ABC):
    """Answers one question: which square resolution, in px, does step ``t`` of ``T`` use.

    ``full_px`` is the run's full training resolution (the size of the batches the data
    loader delivers); ``steps_per_epoch`` is needed only by per-epoch schedules.
    """

    #: Name shown in summaries, ``run.json`` and ``trd presets``.
    name: str
    #: Smallest resolution this schedule may return.
    min_px: int = MIN_PX

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A schedule written before trd read every schedule one way defines resolution_px alone:
        # its plan is that method asked step by step.
        if "resolution_px" in cls.__dict__ and "sizes_px" not in cls.__dict__:
            per_step = cls.__dict__["resolution_px"]

            def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
                sizes = (per_step(self, int(t), total_steps, full_px, steps_per_epoch) for t in steps)
                return np.fromiter(sizes, dtype=np.int64, count=len(steps))

            cls.sizes_px = sizes_px

    @abstractmethod
    def sizes_px(
        self, steps: np.ndarray, total_steps: int, full_px: int, steps_per_epoch: int | None = None
    ) -> np.ndarray:
        """The schedule's one reading: the resolution of each of ``steps`` (int64 step indices in
        ``[0, total_steps)``), as an int64 array. Called after :meth:`validate` and the range check."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The schedule's parameters, JSON-serialisable, as recorded in ``run.json``."""

    def validate(self, full_px: int) -> None:
        """Raise :class:`~trdcli.core.errors.ConfigError` (a ``ValueError``) if this schedule cannot run at
        ``full_px``."""
        _check_full_px(full_px, self.min_px)

    def resolution_px(self, step: int, total_steps: int, full_px: int, steps_per_epoch: int | None = None) -> int:
        """Resolution of ``step`` (0-based) in a run of ``total_steps`` optimizer steps."""
        _check_step(step, total_steps)
        return int(self.plan_range(step, step + 1, total_steps, full_px, steps_per_epoch)[0])

    def plan_px(self, total_steps: int, full_px: int, steps_per_epoch: int | None = None) -> np.ndarray:
        """Resolution of every step of a run, as an int64 array of length ``total_steps``.

        One entry per step: for a run's counts, :func:`trdcli.core.cost.plan_groups` plans in
        slices of :meth:`plan_range`, in memory that does not grow with the run.
        """
        return self.plan_range(0, total_steps, total_steps, full_px, steps_per_epoch)

    def plan_range(
        self, start: int, stop: int, total_steps: int, full_px: int, steps_per_epoch: int | None = None
    ) -> np.ndarray:
        """Resolution of steps ``start`` to ``stop - 1`` of a run of ``total_steps``, as an int64 array."""
        self.validate(full_px)
        _check_range(start, stop, total_steps)
        steps = np.arange(start, stop, dtype=np.int64)
        return np.asarray(self.sizes_px(steps, total_steps, full_px, steps_per_epoch), dtype=np.int64)

    def regularisation(self, step: int, total_steps: int, steps_per_epoch: int | None = None) -> dict[str, float]:
        """Regularisation strengths for ``step`` (e.g. ``dropout``, ``mixup_alpha``); most schedules have none.

        :class:`trdcli.callbacks.regularisation.StageRegularisation` applies them in a fastai fit.
        """
        return {}

    @property
    def full_tail_start_frac(self) -> float:
        """Where the run's guaranteed full-resolution tail begins: every step from this fraction of the run
        on is at full size (1.0: no such tail, or, for the baseline, nothing to end)."""
        return 1.0

    @property
    def has_regularisation(self) -> bool:
        """Whether this schedule sets regularisation strengths at all."""
        return type(self).regularisation is not ResolutionSchedule.regularisation

    def describe(self) -> dict[str, Any]:
        """Name, class and parameters: the ``schedule`` object of ``run.json``."""
        return {"name": self.name, "kind": type(self).__name__, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}(name={self.name!r}, {args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.describe() == other.describe()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(repr(self))


class _ReducedSizeSchedule(ResolutionSchedule):
    """A schedule whose reduced steps have one size, given in px (``low_res``) or as a fraction (``low_scale``)."""

    low_res: int | None
    low_scale: float | None

    def _set_low_size(self, low_res: int | None, low_scale: float | None, min_px: int) -> None:
        self.low_res, self.low_scale = _check_low_size(low_res, low_scale, min_px)
        self.min_px = int(min_px)

    def low_px(self, full_px: int) -> int:
        """The reduced resolution for a run at ``full_px``; raises if it is not below ``full_px``."""
        return _low_px(self.low_res, self.low_scale, full_px, self.min_px)

    def validate(self, full_px):
        self.low_px(full_px)

    def _low_params(self) -> dict[str, Any]:
        return {"low_px": self.low_res} if self.low_res is not None else {"low_scale": self.low_scale}


class ConstantSchedule(ResolutionSchedule):
    """Full resolution at every step: the baseline every other schedule is measured against."""

    def __init__(self, name: str = "baseline"):
        self.name = name

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        return np.full(len(steps), full_px, dtype=np.int64)

    def params(self):
        return {}


class TRDSchedule(_ReducedSizeSchedule):
    """Temporally Resolution Decrement (Xie et al., arXiv 2112.00954), as docs/method.md's "The three
    parameters" fixes it.

    A step whose progress ``step / total_steps`` is below ``until`` is reduced to ``low_res``
    with probability ``prob``; every step from ``until`` on runs at full resolution. The draw
    for a step is a pure function of ``(seed, step)``. Given neither, ``until`` and ``prob``
    are trd's default reading (:func:`trdcli.core.defaults.trd_reading`: 90% of the steps
    reduced over the whole run); ``until`` alone is a window with every step in it reduced.

    With ``prob_end``, the chance is no longer constant: it falls (or rises) linearly with
    progress, from ``prob`` at the first step to ``prob_end`` where the window ends, so random
    reduced steps can be concentrated early in the run, where progressive resizing puts its
    small images, while each step is still drawn at random in time.

    Args:
        low_res: reduced resolution in px. Give it, or ``low_scale``.
        until: end of the decrement window as a fraction of the run, in (0, 1]; 1.0 if only
            ``prob`` is given.
        prob: chance that a step inside the window is reduced, in [0, 1]; 1.0 if only ``until``
            is given.
        prob_end: the chance where the window ends, in [0, 1]; None: ``prob`` throughout.
        seed: seed of the per-step draws; only matters when ``0 < prob < 1``.
        low_scale: reduced resolution as a fraction of the full one, in (0, 1), for
            presets that must work at any ``full_px``.
        min_px: smallest resolution accepted.
        name: name shown in summaries.
    """

    def __init__(
        self,
        low_res: int | None = None,
        until: float | None = None,
        prob: float | None = None,
        seed: int = 0,
        *,
        low_scale: float | None = None,
        prob_end: float | None = None,
        min_px: int = MIN_PX,
        name: str = "trd",
    ):
        self._set_low_size(low_res, low_scale, min_px)
        until, prob = trd_reading(until, prob)
        if not _is_real(until) or not 0 < until <= 1:
            raise ConfigError(f"`until` must be in (0, 1], got {until!r}")
        if not _is_real(prob) or not 0 <= prob <= 1:
            raise ConfigError(f"`prob` must be in [0, 1], got {prob!r}")
        if prob_end is not None and (not _is_real(prob_end) or not 0 <= prob_end <= 1):
            raise ConfigError(f"`prob_end` must be in [0, 1], got {prob_end!r}")
        if not is_int(seed):
            raise ConfigError(f"`seed` must be an integer, got {seed!r}")
        self.until = float(until)
        self.prob = float(prob)
        self.prob_end = None if prob_end is None else float(prob_end)
        self.seed = int(seed)
        self.name = name

    @property
    def full_tail_start_frac(self) -> float:
        return self.until

    @property
    def is_random(self) -> bool:
        """Whether some step's resolution depends on the seed's draw."""
        return not (self.prob in (0.0, 1.0) and self.prob_end in (None, self.prob))

    def reduction_chance(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        """The chance that each of ``steps`` is reduced: 0 from ``until`` on, ``prob`` (or the line from
        ``prob`` to ``prob_end``) before. The expected compute of a run is a sum over these chances."""
        progress = np.asarray(steps, dtype=np.int64) / total_steps
        if self.prob_end is None:
            chance = np.full(progress.shape, self.prob)
        else:
            chance = self.prob + (self.prob_end - self.prob) * (progress / self.until)
        # Progress is step / total_steps in float64, compared with until: the boundary step is the one
        # docs/method.md names.
        return np.where(progress < self.until, chance, 0.0)

    def _reduced(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        chance = self.reduction_chance(steps, total_steps)
        if not self.is_random:
            return chance == 1.0
        return step_uniforms(self.seed, steps) < chance

    def is_reduced(self, step: int, total_steps: int) -> bool:
        """Whether ``step`` runs at the reduced resolution."""
        _check_step(step, total_steps)
        return bool(self._reduced(np.array([step]), total_steps)[0])

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        return np.where(self._reduced(steps, total_steps), self.low_px(full_px), full_px)

    def params(self):
        out = {**self._low_params(), "until_frac": self.until, "prob": self.prob}
        if self.prob_end is not None:  # only then: run.json of a constant chance is as it always was
            out["prob_end"] = self.prob_end
        return {**out, "seed": self.seed}


class ComposerSchedule(ResolutionSchedule):
    """MosaicML Composer's ``ProgressiveResizing`` schedule, evaluated per step.

    Scale ``initial_scale`` until ``delay_frac`` of training, then a linear ramp that reaches
    full size when ``finetune_frac`` of training is left; each size is rounded to the nearest
    multiple of ``size_increment`` (Composer: ``round(width * scale / inc) * inc``), and never
    above full size. Composer itself resizes with nearest neighbour; trd always antialiases.
    Source: composer/algorithms/progressive_resizing/progressive_resizing.py.
    """

    def __init__(
        self,
        initial_scale: float = 0.5,
        delay_frac: float = 0.5,
        finetune_frac: float = 0.2,
        size_increment: int = 4,
        *,
        min_px: int = MIN_PX,
        name: str = "composer",
    ):
        if not _is_real(initial_scale) or not 0 < initial_scale <= 1:
            raise ConfigError(f"initial_scale must be in (0, 1], got {initial_scale!r}")
        if not _is_real(delay_frac) or not 0 <= delay_frac <= 1:
            raise ConfigError(f"delay_frac must be in [0, 1], got {delay_frac!r}")
        if not _is_real(finetune_frac) or not 0 <= finetune_frac <= 1:
            raise ConfigError(f"finetune_frac must be in [0, 1], got {finetune_frac!r}")
        if delay_frac + finetune_frac > 1:
            raise ConfigError(f"delay_frac + finetune_frac must be at most 1, got {delay_frac} + {finetune_frac}")
        require_positive_int("size_increment", size_increment)
        self.initial_scale = float(initial_scale)
        self.delay_frac = float(delay_frac)
        self.finetune_frac = float(finetune_frac)
        self.size_increment = int(size_increment)
        self.min_px = int(min_px)
        self.name = name

    @property
    def full_tail_start_frac(self) -> float:
        return 1.0 - self.finetune_frac

    def scale_at(self, progress):
        """Composer's scale factor at each progress fraction (an array, or one float for one), before rounding."""
        if np.ndim(progress) == 0:
            return float(self.scale_at(np.asarray([progress]))[0])
        progress = np.asarray(progress, dtype=np.float64)
        ramp_frac = 1.0 - self.finetune_frac - self.delay_frac
        if ramp_frac <= 0:
            elapsed = np.where(progress < self.delay_frac, 0.0, 1.0)
        else:
            elapsed = np.clip((progress - self.delay_frac) / ramp_frac, 0.0, 1.0)
        return self.initial_scale + (1.0 - self.initial_scale) * elapsed

    def _px(self, full_px: int, scale: np.ndarray) -> np.ndarray:
        # Composer's round(width * scale / inc) * inc, never above full size (numpy rounds half
        # to even, as Python's round does).
        inc = self.size_increment
        return np.minimum(np.round(full_px * np.asarray(scale) / inc).astype(np.int64) * inc, full_px)

    def validate(self, full_px):
        _check_full_px(full_px, self.min_px)
        smallest = int(self._px(full_px, self.initial_scale))
        if smallest < self.min_px:
            raise ConfigError(
                f"initial_scale={self.initial_scale} gives {smallest} px at a full resolution of {full_px} px: "
                f"the network needs at least {self.min_px} px"
            )

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        return self._px(full_px, self.scale_at(steps / total_steps))

    def params(self):
        return {
            "initial_scale": self.initial_scale,
            "delay_frac": self.delay_frac,
            "finetune_frac": self.finetune_frac,
            "size_increment": self.size_increment,
        }


class FFCVSchedule(_ReducedSizeSchedule):
    """FFCV's ImageNet resolution ramp (ffcv-imagenet ``get_resolution``), per epoch.

    ``low`` until epoch ``start_ramp``, full size from epoch ``end_ramp``, and in between a
    linear interpolation rounded to the nearest multiple of ``multiple``. FFCV's rn50 configs
    ramp between epochs 65 and 76 of 88; trd keeps those fractions of the run.
    """

    def __init__(
        self,
        low_res: int | None = None,
        start_ramp_frac: float = 65 / 88,
        end_ramp_frac: float = 76 / 88,
        multiple: int = 32,
        *,
        low_scale: float | None = None,
        min_px: int = MIN_PX,
        name: str = "ffcv",
    ):
        self._set_low_size(low_res, low_scale, min_px)
        if (
            not _is_real(start_ramp_frac)
            or not _is_real(end_ramp_frac)
            or not (0 <= start_ramp_frac <= end_ramp_frac <= 1)
        ):
            raise ConfigError(
                f"need 0 <= start_ramp_frac <= end_ramp_frac <= 1, got {start_ramp_frac!r} and {end_ramp_frac!r}"
            )
        require_positive_int("multiple", multiple)
        self.start_ramp_frac = float(start_ramp_frac)
        self.end_ramp_frac = float(end_ramp_frac)
        self.multiple = int(multiple)
        self.name = name

    @property
    def full_tail_start_frac(self) -> float:
        # Full size from epoch floor(end_ramp_frac * epochs) (or earlier), which starts at or before end_ramp_frac.
        return self.end_ramp_frac

    def ramp_epochs(self, epochs: int) -> tuple[int, int]:
        """(start_ramp, end_ramp) epochs for a run of ``epochs``: ``floor(frac * epochs)``.

        This reproduces every ResNet-50 config FFCV publishes (16 -> 11/13, 32 -> 23/27,
        56 -> 41/48, 88 -> 65/76 epochs), in whole epochs as FFCV's schedule is. In runs of a
        few epochs the floors could leave no epoch past the ramp, so the last epoch is always
        at full size.
        """
        end = min(math.floor(self.end_ramp_frac * epochs), epochs - 1)
        start = min(math.floor(self.start_ramp_frac * epochs), epochs - 2)
        return start, end

    def epoch_px(self, epoch: int, epochs: int, low: int, full_px: int) -> int:
        """ffcv-imagenet's ``get_resolution``: the size of ``epoch`` of ``epochs`` ramping from ``low``."""
        start, end = self.ramp_epochs(epochs)
        if epoch <= start:
            return low
        if epoch >= end:
            return full_px
        interp = low + (full_px - low) * (epoch - start) / (end - start)
        return min(max(int(round(interp / self.multiple)) * self.multiple, low), full_px)

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        if not is_int(steps_per_epoch) or steps_per_epoch < 1 or total_steps % steps_per_epoch:
            raise ConfigError(
                f"the ffcv schedule changes per epoch: steps_per_epoch must divide total_steps={total_steps}, "
                f"got {steps_per_epoch!r}"
            )
        # One size per epoch: worked out once for each epoch the steps touch and looked up per step.
        epochs, low = total_steps // steps_per_epoch, self.low_px(full_px)
        touched, index = np.unique(steps // steps_per_epoch, return_inverse=True)
        per_epoch = np.asarray([self.epoch_px(int(e), epochs, low, full_px) for e in touched], dtype=np.int64)
        return per_epoch[index].reshape(-1)

    def params(self):
        out = self._low_params()
        out.update(start_ramp_frac=self.start_ramp_frac, end_ramp_frac=self.end_ramp_frac, multiple=self.multiple)
        return out


class StagedSchedule(ResolutionSchedule):
    """EfficientNetV2's progressive learning (Tan & Le 2021), as in google/automl's code.

    The run is cut into ``stages`` equal parts; stage ``i`` (0-based) covers steps
    ``[int(i/M*T), int((i+1)/M*T))`` and trains at ``int(base + (full - base) * (i+1)/M)`` px,
    so the last stage is at full size. Regularisation rises linearly per stage
    (``np.linspace(start, end, M)``): ``dropout`` and ``mixup_alpha``.
    """

    def __init__(
        self,
        stages: int = 4,
        base_scale: float = 0.5,
        dropout: tuple[float, float] = (0.1, 0.4),
        mixup_alpha: tuple[float, float] = (0.0, 0.2),
        *,
        min_px: int = MIN_PX,
        name: str = "efficientnetv2",
    ):
        require_positive_int("stages", stages)
        if not _is_real(base_scale) or not 0 < base_scale < 1:
            raise ConfigError(f"base_scale must be a fraction in (0, 1), got {base_scale!r}")
        for label, pair, upper in (("dropout", dropout, 1.0), ("mixup_alpha", mixup_alpha, math.inf)):
            if len(pair) != 2 or not all(_is_real(v) and 0 <= v < upper for v in pair):
                raise ConfigError(f"{label} must be a (start, end) pair of values in [0, {upper}), got {pair!r}")
        self.stages = int(stages)
        self.base_scale = float(base_scale)
        self.dropout = (float(dropout[0]), float(dropout[1]))
        self.mixup_alpha = (float(mixup_alpha[0]), float(mixup_alpha[1]))
        self.min_px = int(min_px)
        self.name = name

    @property
    def full_tail_start_frac(self) -> float:
        # The last stage, at full size, starts at step int((stages - 1) / stages * total_steps).
        return (self.stages - 1) / self.stages

    def stages_of(self, steps: np.ndarray, total_steps: int) -> np.ndarray:
        """0-based stage of each of ``steps``: how many of google/automl's ``int(i / M * T)`` boundaries
        it has reached."""
        boundaries = np.asarray([int((i + 1) / self.stages * total_steps) for i in range(self.stages - 1)])
        return np.searchsorted(boundaries.astype(np.int64), steps, side="right")

    def stage(self, step: int, total_steps: int) -> int:
        """0-based stage of ``step``."""
        _check_step(step, total_steps)
        return int(self.stages_of(np.array([step], dtype=np.int64), total_steps)[0])

    def _px(self, full_px: int, stage: int) -> int:
        base = full_px * self.base_scale
        return int(base + (full_px - base) * (stage + 1) / self.stages)

    def validate(self, full_px):
        _check_full_px(full_px, self.min_px)
        smallest = self._px(full_px, 0)
        if smallest < self.min_px:
            raise ConfigError(
                f"base_scale={self.base_scale} gives a first stage of {smallest} px at a full resolution of "
                f"{full_px} px: the network needs at least {self.min_px} px"
            )

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        per_stage = np.asarray([self._px(full_px, i) for i in range(self.stages)], dtype=np.int64)
        return per_stage[self.stages_of(steps, total_steps)]

    def regularisation(self, step, total_steps, steps_per_epoch=None):
        stage = self.stage(step, total_steps)
        pick = lambda pair: float(np.linspace(pair[0], pair[1], self.stages)[stage])  # noqa: E731
        return {"dropout": pick(self.dropout), "mixup_alpha": pick(self.mixup_alpha)}

    def params(self):
        return {
            "stages": self.stages,
            "base_scale": self.base_scale,
            "dropout": list(self.dropout),
            "mixup_alpha": list(self.mixup_alpha),
        }
