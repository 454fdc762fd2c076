"""One-cycle learning rate, optionally with its own annealing for TRD's full-resolution tail.

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
