"""The live progress display of `trd train` and `trd demo`: one rich progress bar on stderr.

It is a :class:`~trdcli.run.observer.TrainObserver`; fastai's own bar is switched off, so there is
only one display. Epoch results are printed above the bar as they arrive.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trdcli.run.observer import TrainObserver


class RichTrainObserver(TrainObserver):
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,  # the bar goes when done; epoch lines and the summary stay
        )
        self._task = None
        self._epochs = 0
        self._label = ""

    def __enter__(self) -> RichTrainObserver:
        # A live bar only on a terminal: in a log file or CI output, the epoch lines are the record.
        if self.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.console.is_terminal:
            self.progress.stop()

    def run_label(self, label: str) -> None:
        """Prefix for the lines of the next run (the demo trains two)."""
        self._label = f"{label}: " if label else ""

    def stage(self, message: str) -> None:
        description = f"{self._label}{message}"
        if self._task is None:
            self._task = self.progress.add_task(description, total=None, info="")
        else:
            self.progress.reset(self._task, total=None, description=description, info="")

    def fit_started(self, total_steps: int, steps_per_epoch: int, epochs: int, start_epoch: int) -> None:
        self._epochs = epochs
        description = f"{self._label}epoch {start_epoch + 1}/{epochs}"
        if self._task is None:
            self._task = self.progress.add_task(description, total=total_steps, info="")
        self.progress.reset(
            self._task, total=total_steps, completed=start_epoch * steps_per_epoch, description=description, info=""
        )

    def step_done(self, step: int, epoch: int, px: int, loss: float, images_per_s: float) -> None:
        self.progress.update(
            self._task,
            completed=step + 1,
            description=f"{self._label}epoch {epoch + 1}/{self._epochs}",
            info=f"{px:>4} px  loss {loss:6.3f}  {images_per_s:7,.0f} img/s",
        )

    def validating(self, epoch: int) -> None:
        self.progress.update(self._task, description=f"{self._label}epoch {epoch + 1}/{self._epochs} validating")

    def epoch_done(self, row: dict[str, Any]) -> None:
        parts = [f"{self._label}epoch {row['epoch'] + 1}/{self._epochs}"]
        for key, label in (("train_loss", "train loss"), ("valid_loss", "valid loss")):
            if key in row:
                parts.append(f"{label} {row[key]:.4f}")
        if "accuracy" in row:
            parts.append(f"top-1 {100 * row['accuracy']:.1f}%")
        if "top5" in row:
            parts.append(f"top-5 {100 * row['top5']:.1f}%")
        steps = ", ".join(
            f"{n} at {px} px" for px, n in sorted(row.get("steps_by_px", {}).items(), key=lambda kv: -int(kv[0]))
        )
        parts.append(f"steps: {steps}")
        if "data_wait_frac" in row:
            parts.append(f"data wait {100 * row['data_wait_frac']:.0f}%")
        parts.append(f"{row['wall_s']:.1f} s")
        self.console.print("  ".join(parts), highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def note(self, message: str) -> None:
        self.console.print(f"[cyan]note:[/] {message}", highlight=False)
