"""``TrainObserver``: how a running :func:`~trdcli.run.train.train` tells its caller what it is doing.

The core never prints; a front end passes an observer (the CLI's draws a rich progress bar).
"""

from __future__ import annotations

from typing import Any


class TrainObserver:
    """Receives progress while a run trains. Every method is optional; the defaults do nothing."""

    def run_label(self, label: str) -> None:
        """The runs that follow belong to ``label`` (commands that train several runs name each)."""

    def stage(self, message: str) -> None:
        """A setup stage started (scanning images, building the model, ...)."""

    def fit_started(self, total_steps: int, steps_per_epoch: int, epochs: int, start_epoch: int) -> None:
        """Training is about to begin (``start_epoch`` > 0 when resuming)."""

    def step_done(self, step: int, epoch: int, px: int, loss: float, images_per_s: float) -> None:
        """Optimizer step ``step`` (0-based, in the whole run) finished."""

    def validating(self, epoch: int) -> None:
        """Validation of ``epoch`` started."""

    def epoch_done(self, row: dict[str, Any]) -> None:
        """An epoch finished: a row of the history table."""

    def warn(self, message: str) -> None:
        """Something the user should know, that does not stop the run."""

    def note(self, message: str) -> None:
        """Information, not a problem: where a tracker keeps the run, how to upload it."""


class WarningLog:
    """Warnings and notes of one run, kept apart: each shown to the observer as it happens, once, and
    kept for the result (run.json's ``warnings`` and ``notes``)."""

    def __init__(self, observer: TrainObserver):
        self.observer = observer
        self.messages: list[str] = []
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            self.observer.note(message)

    def warn(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)
            self.observer.warn(message)
