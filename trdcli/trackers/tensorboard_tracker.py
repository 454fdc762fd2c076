"""TensorBoard: a run's steps, epochs and summary as event files in ``RUN/tensorboard/``.

Scalars per step and per epoch (x axis: the run's step), the final figures as scalars and as a
text table, the configuration in the HParams plugin (so that ``tensorboard --logdir`` over a
``trd compare`` folder lines the settings up in one table), and ``schedule.png`` as an image.
Written with ``torch.utils.tensorboard``, which needs the ``tensorboard`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trdcli.trackers.interface import RunSummary, StepLog

SUBDIR = "tensorboard"
PACKAGES = ("tensorboard",)


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, log_dir: Path | str):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def start(self, config: dict[str, Any]) -> None:
        pass  # the configuration goes with the final metrics (HParams needs both at once)

    def log_steps(self, steps: Sequence[StepLog]) -> None:
        for log in steps:
            for tag, value in log.scalars().items():
                self.writer.add_scalar(tag, value, log.step)

    def log_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self.writer.add_scalar("trd/epoch", epoch, step)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def finish(self, summary: RunSummary) -> None:
        import numpy as np
        from PIL import Image

        if summary.text:
            self.writer.add_text("trd/summary", summary.text, summary.step)
        for tag, path in summary.images.items():
            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(tag, image, summary.step, dataformats="HWC")
        if summary.hparams:
            # The HParams table pairs the settings with these figures, and add_hparams writes them as
            # scalars itself; run_name ".": beside the run's other events, not in a new subfolder.
            self.writer.add_hparams(summary.hparams, summary.scalars, run_name=".", global_step=summary.step)
        else:
            for tag, value in summary.scalars.items():
                self.writer.add_scalar(tag, value, summary.step)
        self.writer.flush()

    def close(self, outcome: str = "finished") -> None:
        if outcome != "finished":  # TensorBoard keeps no run status: a line says the run stopped early
            self.writer.add_text("trd/outcome", f"the run stopped early: {outcome}")
        self.writer.close()


def tracker_for_run(run_dir: Path, group=None, note=None) -> TensorBoardTracker:
    return TensorBoardTracker(run_dir / SUBDIR)  # a comparison's runs line up under its folder already
