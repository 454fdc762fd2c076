"""Learning-rate schedules, each a pure function of training progress: fastai's one-cycle (the default),
cosine, step, linear, flat-cos and constant, each optionally with its own annealing for TRD's
full-resolution tail.

Under fastai's one-cycle, the window reading's full-resolution tail (the steps from ``until``
on) comes when the rate has all but reached zero: at ``until`` = 0.9 it starts at 4% of the
peak, so the weights barely adapt to full-size images before training ends. A *tail rate*
gives the tail an annealing of its own, as FixRes fine-tunes a network at the test resolution
after training (Touvron et al. 2019, "Fixing the train-test resolution discrepancy"): one-cycle
runs over ``[0, until)`` and the tail anneals from ``tail_lr_frac`` x the peak down to the
same final rate. Both are pure functions of training progress, like fastai's schedulers, so
an interrupted run resumes on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trdcli.core.errors import ConfigError


def cos_anneal(start: float, end: float, pos: float) -> float:
    """``start`` at ``pos`` 0 to ``end`` at 1 along half a cosine (fastai's ``SchedCos``)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


@dataclass(frozen=True)
class OneCycle:
    """Learning rate (as a fraction of the peak) and momentum at each point of training.

    The defaults are ``fit_one_cycle``'s: warm up from peak/25 over the first 25%, anneal to
    peak/1e5, momentum 0.95 -> 0.85 -> 0.95. With ``tail_lr_frac``, that cycle is compressed into
    ``[0, tail_start_frac)`` and the tail anneals from ``tail_lr_frac`` with momentum 0.85 -> 0.95.
    """

    tail_start_frac: float = 1.0
    tail_lr_frac: float | None = None
    div: float = 25.0
    div_final: float = 1e5
    pct_start: float = 0.25
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)
    schedules_momentum = True  # fit_one_cycle's momentum curve, which the other schedules leave alone

    def __post_init__(self):
        if self.tail_lr_frac is None:
            return
        if not 0 < self.tail_lr_frac <= 1:
            raise ConfigError(f"`tail_lr` must be a fraction of the peak rate in (0, 1], got {self.tail_lr_frac!r}")
        if not 0 < self.tail_start_frac < 1:
            raise ConfigError(
                "`tail_lr` needs a full-resolution tail: a TRD schedule whose `until` is below 1, or a "
                "ramp that ends at full size (composer, ffcv, efficientnetv2) "
                f"(this one reduces until {self.tail_start_frac:g})",
            )

    def _in_tail(self, pos: float) -> bool:
        return self.tail_lr_frac is not None and pos >= self.tail_start_frac

    def _cycle_pos(self, pos: float) -> float:
        return pos / self.tail_start_frac if self.tail_lr_frac is not None else pos

    def _tail_pos(self, pos: float) -> float:
        return (pos - self.tail_start_frac) / (1 - self.tail_start_frac)

    def lr_frac_at(self, pos: float) -> float:
        """The rate at training progress ``pos`` in [0, 1], as a fraction of the peak."""
        if self._in_tail(pos):
            return cos_anneal(self.tail_lr_frac, 1 / self.div_final, self._tail_pos(pos))
        p = self._cycle_pos(pos)
        if p < self.pct_start:
            return cos_anneal(1 / self.div, 1.0, p / self.pct_start)
        return cos_anneal(1.0, 1 / self.div_final, (p - self.pct_start) / (1 - self.pct_start))

    def mom_at(self, pos: float) -> float:
        """Momentum (Adam's beta1) at training progress ``pos``."""
        high, low, end = self.moms
        if self._in_tail(pos):
            return cos_anneal(low, end, self._tail_pos(pos))
        p = self._cycle_pos(pos)
        if p < self.pct_start:
            return cos_anneal(high, low, p / self.pct_start)
        return cos_anneal(low, end, (p - self.pct_start) / (1 - self.pct_start))


# Warm-up starts at this fraction of the peak rate and rises linearly: torchvision's
# `--lr-warmup-decay` default (references/classification/train.py).
WARMUP_START_FRAC = 0.01


def _warmed(pos: float, warmup_frac: float, start_frac: float) -> float | None:
    """The warm-up's rate at ``pos`` (a fraction of the peak), or None once it is over."""
    if pos >= warmup_frac:
        return None
    return start_frac + (1 - start_frac) * pos / warmup_frac


def _after_warmup(pos: float, warmup_frac: float) -> float:
    return (pos - warmup_frac) / (1 - warmup_frac)


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from the peak to ``final_frac`` of it after a linear warm-up (timm's and
    torchvision's cosine; SGDR without restarts, Loshchilov and Hutter 2017)."""

    warmup_frac: float = 0.0
    final_frac: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        warm = _warmed(pos, self.warmup_frac, self.warmup_start_frac)
        return warm if warm is not None else cos_anneal(1.0, self.final_frac, _after_warmup(pos, self.warmup_frac))


@dataclass(frozen=True)
class Step:
    """The peak times ``gamma`` at each milestone passed (fractions of the run), after a linear warm-up
    (torchvision's StepLR and MultiStepLR)."""

    milestones_frac: tuple[float, ...]
    gamma: float = 0.1
    warmup_frac: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        warm = _warmed(pos, self.warmup_frac, self.warmup_start_frac)
        return warm if warm is not None else self.gamma ** sum(pos >= m for m in self.milestones_frac)


@dataclass(frozen=True)
class Linear:
    """A linear warm-up to the peak, then a straight line down to zero at the end (FFCV's 'cyclic'
    schedule, ffcv-imagenet's train_imagenet.py ``get_cyclic_lr``)."""

    warmup_frac: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        warm = _warmed(pos, self.warmup_frac, self.warmup_start_frac)
        return warm if warm is not None else 1.0 - _after_warmup(pos, self.warmup_frac)


@dataclass(frozen=True)
class FlatCos:
    """The peak held for ``flat_frac`` of the run, then half a cosine to peak/1e5 (fastai's
    ``fit_flat_cos``: pct_start 0.75, div_final 1e5), after an optional linear warm-up."""

    flat_frac: float = 0.75
    warmup_frac: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC
    div_final: float = 1e5
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        warm = _warmed(pos, self.warmup_frac, self.warmup_start_frac)
        if warm is not None:
            return warm
        if pos < self.flat_frac:
            return 1.0
        return cos_anneal(1.0, 1 / self.div_final, (pos - self.flat_frac) / (1 - self.flat_frac))


@dataclass(frozen=True)
class Constant:
    """The peak throughout, after an optional linear warm-up."""

    warmup_frac: float = 0.0
    warmup_start_frac: float = WARMUP_START_FRAC
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        warm = _warmed(pos, self.warmup_frac, self.warmup_start_frac)
        return 1.0 if warm is None else warm


@dataclass(frozen=True)
class TailAnnealed:
    """``main`` compressed into ``[0, tail_start_frac)``, then the full-resolution tail's own half cosine
    from ``tail_lr_frac`` of the peak down to where ``main`` ends: :class:`OneCycle`'s tail for any schedule."""

    main: Cosine | Step | Linear | FlatCos | Constant
    tail_start_frac: float
    tail_lr_frac: float
    schedules_momentum = False

    def lr_frac_at(self, pos: float) -> float:
        if pos < self.tail_start_frac:
            return self.main.lr_frac_at(pos / self.tail_start_frac)
        tail_pos = (pos - self.tail_start_frac) / (1 - self.tail_start_frac)
        return cos_anneal(self.tail_lr_frac, self.main.lr_frac_at(1.0), tail_pos)


LRSchedule = OneCycle | Cosine | Step | Linear | FlatCos | Constant | TailAnnealed
