"""When a run has diverged: its training loss far above where it has been, and above chance, for many steps.

NaN and inf stop a run at once (:class:`~trdcli.run.callbacks.StopOnNonFiniteLoss`); a loss
that explodes to thousands and stays finite trains on to a model at chance and used to be
reported as a success. The rule follows fastai's ``lr_find``, which stops when the smoothed
loss passes 4x its minimum: here the smoothed loss (fastai's debiased running average, beta
0.98) must stay above 4x its lowest value so far, and above the loss of a uniform guess
(``ln(classes)``), for 20 steps in a row. The floor at chance keeps late runs safe: a run
that reached 0.05 and rises to 0.3 when its full-resolution tail starts is not diverging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DIVERGENCE_RATIO = 4.0
DIVERGENCE_STEPS = 20
SMOOTHING_BETA = 0.98


@dataclass
class DivergenceWatch:
    """Feed it each training step's loss; it says when the run has diverged."""

    num_classes: int
    ratio: float = DIVERGENCE_RATIO
    patience_steps: int = DIVERGENCE_STEPS
    beta: float = SMOOTHING_BETA
    steps: int = 0
    running: float = 0.0
    lowest: float = math.inf
    smoothed: float = math.nan
    steps_above: int = 0

    @property
    def chance_loss(self) -> float:
        """Cross-entropy of a uniform guess over the classes."""
        return math.log(self.num_classes)

    def update(self, loss: float) -> bool:
        """True once the smoothed loss has stayed above both thresholds for ``patience_steps`` steps."""
        self.steps += 1
        self.running = self.beta * self.running + (1 - self.beta) * loss
        self.smoothed = self.running / (1 - self.beta**self.steps)
        self.lowest = min(self.lowest, self.smoothed)
        above = self.smoothed > max(self.ratio * self.lowest, self.chance_loss)
        self.steps_above = self.steps_above + 1 if above else 0
        return self.steps_above >= self.patience_steps

    def describe(self) -> str:
        return (
            f"the training loss diverged: its running average {self.smoothed:.4g} stayed above {self.ratio:g}x its "
            f"lowest ({self.lowest:.3g}) and above chance ({self.chance_loss:.3g}) for {self.steps_above} steps"
        )


# A run too short for the watch (fewer than DIVERGENCE_STEPS steps) can still end diverged. Its
# final training loss against this many times chance (ln(classes), a uniform guess) says so: a
# run that learned nothing but stayed sane ends near chance (the budget benchmark's worst epoch
# was 1.12x chance), a diverged one thousands of times above it (the lr 9 case: 1,209 at ln 2).
FAR_ABOVE_CHANCE = 10.0


def ended_far_above_chance(final_train_loss: float, num_classes: int, ratio: float = FAR_ABOVE_CHANCE) -> bool:
    """Whether a run's last training loss is no trained model's: above ``ratio`` x chance, or not finite."""
    return not math.isfinite(final_train_loss) or final_train_loss > ratio * math.log(num_classes)
