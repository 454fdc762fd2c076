"""Weights & Biases: a run's steps, epochs and summary through W&B's own API, files under ``RUN/wandb/``.

``wandb.init`` with the run's configuration (flattened), ``log`` with an explicit step (the
run's step, also logged as ``trd/step`` and made every key's x axis with ``define_metric``), the
final figures in the run's summary, ``schedule.png`` as an image, and ``run.json``,
``history.csv`` and ``schedule.png`` saved with the run. Offline where nobody has logged in
(no ``WANDB_API_KEY``, no ``WANDB_MODE``, no netrc entry): said in one line, and ``wandb sync
RUN/wandb/offline-run-*`` uploads it later. The project: ``WANDB_PROJECT`` (which
``--wandb-project`` sets), else ``trd``; the entity: ``WANDB_ENTITY``. Runs of a ``trd compare``
share one group, the compare folder's name. The W&B run's id is kept in ``RUN/wandb/trd-run-id``,
so ``--resume`` continues the same W&B run (``resume="allow"``), as MLflow's does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trdcli.trackers.interface import PREFIX, RunGroup, RunSummary, StepLog, flat_hparams, run_label

PACKAGES = ("wandb",)
DEFAULT_PROJECT = "trd"
STEP_KEY = PREFIX + "step"
RUN_ID_FILE = "trd-run-id"  # in RUN/wandb/: the W&B run this run directory logs to


def run_id(run_dir: Path) -> str:
    """The id of the W&B run ``run_dir`` logs to: the one kept there (a resumed run), else a new one kept."""
    import secrets

    path = Path(run_dir) / "wandb" / RUN_ID_FILE
    if path.is_file() and (kept := path.read_text().strip()):
        return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(4)  # W&B's own ids are 8 characters of [a-z0-9]
    path.write_text(new + "\n")
    return new


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


class WandbTracker:
    name = "wandb"

    def __init__(self, run_dir: Path, group: RunGroup | None = None, note: Callable[[str], None] = print):
        self.run_dir, self.group, self.note = Path(run_dir), group, note
        self.run = None

    def start(self, config: dict[str, Any]) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE")
        if mode is None and not _logged_in():
            mode = "offline"
            self.note(f"W&B: not logged in, so offline; `wandb sync {self.run_dir / 'wandb'}/offline-run-*` uploads it")
        self.run = wandb.init(
            id=run_id(self.run_dir),
            resume="allow",  # a resumed trd run continues its W&B run; a new one starts it
            project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            entity=os.environ.get("WANDB_ENTITY"),
            dir=str(self.run_dir),
            name=run_label(self.run_dir, self.group),
            group=self.group.name if self.group is not None else None,
            config=flat_hparams(config),
            mode=mode,
            settings=wandb.Settings(silent=True, console="off"),
            reinit="create_new",  # a comparison trains its runs one after another in one process
        )
        self.run.define_metric(STEP_KEY)
        self.run.define_metric(PREFIX + "*", step_metric=STEP_KEY)

    def log_steps(self, steps: Sequence[StepLog]) -> None:
        for log in steps:
            self.run.log({STEP_KEY: log.step, **log.scalars()}, step=log.step)

    def log_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self.run.log({STEP_KEY: step, PREFIX + "epoch": epoch, **values}, step=step)

    def finish(self, summary: RunSummary) -> None:
        import wandb

        images = {tag: wandb.Image(str(path)) for tag, path in summary.images.items()}
        self.run.log({STEP_KEY: summary.step, **summary.scalars, **images}, step=summary.step)
        self.run.summary.update(summary.scalars)
        for path in summary.files:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, outcome: str = "finished") -> None:
        if self.run is not None:
            # W&B marks a run that exits non-zero as failed; the summary says which way it stopped.
            self.run.summary["trd/outcome"] = outcome
            self.run.finish(exit_code=0 if outcome == "finished" else 1)
            self.run = None


def tracker_for_run(run_dir: Path, group: RunGroup | None = None, note: Callable[[str], None] = print) -> WandbTracker:
    return WandbTracker(run_dir, group, note)
