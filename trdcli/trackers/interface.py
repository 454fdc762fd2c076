"""Trackers: the one interface a run's steps, epochs and summary reach the tools users watch training in.

fastai's own tracker callbacks log the loss and the optimiser's settings; none of them knows
what only trd knows: the resolution each step ran at, its FLOPs, the compute saved so far and
the time the step waited for data. :class:`Tracker` is what the training loop calls
(``start``, ``log_steps``, ``log_epoch``, ``finish``, ``close``), so that each tool is one small
module (:mod:`trdcli.trackers.tensorboard_tracker`); :class:`trdcli.trackers.callback.TRDTracker` is the
fastai callback that feeds them. Keys are ``run.json``'s with a ``trd/`` prefix. This module
imports nothing heavy: ``TrainConfig`` checks ``--log-to`` names with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trdcli.core.errors import ConfigError
from trdcli.core.ledger import share_of_baseline

PREFIX = "trd/"
# How a run (or a comparison) ended, as trackers are told when they close: trained to the end; stopped
# from outside (Ctrl-C, SIGTERM: it can be resumed); stopped by an error (divergence, bad data, a bug).
OUTCOMES = ("finished", "killed", "failed")


def outcome_of(exc: BaseException | None) -> str:
    """The outcome of a run that ended with ``exc`` (None: it finished)."""
    from trdcli.core.errors import TrainingInterrupted

    if exc is None:
        return "finished"
    return "killed" if isinstance(exc, TrainingInterrupted | KeyboardInterrupt) else "failed"


@dataclass(frozen=True)
class StepLog:
    """One finished training step, as a tracker shows it."""

    step: int  # the run's step index, counting every fit and earlier processes' steps
    px: int
    images: int  # every rank's share of the step
    step_train_flops: int  # this step's training FLOPs
    run_train_flops: int  # the run's training FLOPs so far, this step included
    run_baseline_train_flops: int  # the same steps at full resolution
    lr: float
    loss: float
    data_wait_s: float | None = None  # how long the step waited for its batch; None if not timed

    # The names the trackers log them under (trd/train_flops), which StepLog's fields had before.
    @property
    def train_flops(self) -> int:
        return self.run_train_flops

    @property
    def baseline_train_flops(self) -> int:
        return self.run_baseline_train_flops

    @property
    def compute_saved_frac(self) -> float:
        """Of the training steps so far (BatchNorm recalibration comes after the last step)."""
        return 1.0 - share_of_baseline(self.run_train_flops, self.run_baseline_train_flops)

    def scalars(self) -> dict[str, float]:
        out = {
            "px": self.px,
            "images": self.images,
            "step_train_flops": self.step_train_flops,
            "train_flops": self.run_train_flops,
            "baseline_train_flops": self.run_baseline_train_flops,
            "compute_saved_frac": self.compute_saved_frac,
            "lr": self.lr,
            "loss": self.loss,
        }
        if self.data_wait_s is not None:
            out["data_wait_s"] = self.data_wait_s
        return {PREFIX + k: float(v) for k, v in out.items()}


@dataclass(frozen=True)
class RunSummary:
    """What a tracker keeps of the finished run: final figures, the settings, a text, pictures."""

    step: int  # the last step's index
    scalars: dict[str, float]  # trd/-prefixed, as run.json names them
    hparams: dict[str, bool | int | float | str] = field(default_factory=dict)
    text: str = ""  # markdown
    images: dict[str, Path] = field(default_factory=dict)  # tag -> PNG
    files: list[Path] = field(default_factory=list)  # the run directory's files to keep with the run


@dataclass(frozen=True)
class RunGroup:
    """Runs trained together (``trd compare``), as each tracker groups them: a W&B group, an MLflow
    parent run with a child per setting and seed."""

    name: str  # the compare folder's name
    store_dir: Path  # where local stores go (MLflow's SQLite): the compare folder
    parents: dict[str, str] = field(default_factory=dict)  # tracker name -> the id of its parent run


def run_label(run_dir: Path, group: RunGroup | None) -> str:
    """A run's name in a tracker: ``<setting>/seed<k>`` within a comparison, else its folder's name."""
    if group is not None and run_dir.is_relative_to(group.store_dir):
        return run_dir.relative_to(group.store_dir).as_posix()
    return run_dir.name


class Tracker(Protocol):
    name: str

    def start(self, config: dict[str, Any]) -> None: ...

    def log_steps(self, steps: Sequence[StepLog]) -> None: ...

    def log_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None: ...

    def finish(self, summary: RunSummary) -> None: ...

    def close(self, outcome: str = "finished") -> None: ...


# name -> the module that makes it (``tracker_for_run``) and says which packages it needs (``PACKAGES``)
TRACKERS = {
    "tensorboard": "trdcli.trackers.tensorboard_tracker",
    "wandb": "trdcli.trackers.wandb_tracker",
    "mlflow": "trdcli.trackers.mlflow_tracker",
}


def _packages(name: str) -> tuple[str, ...]:
    import importlib

    module = importlib.import_module(TRACKERS[name])
    return module.packages() if callable(getattr(module, "packages", None)) else module.PACKAGES


def check_trackers(names: Iterable[str]) -> None:
    """Before any training: every name is a tracker and the packages it needs are installed."""
    import importlib.util

    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"`log_to` must be one of {', '.join(TRACKERS)}, got {name!r}")
        missing = [p for p in _packages(name) if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(
                f'`log_to` {name} needs {", ".join(missing)}: pip install "trdcli[{name}]" '
                f'(in a checkout of trd: pip install -e ".[{name}]")'
            )


def make_trackers(
    names: Iterable[str], run_dir: Path, group: RunGroup | None = None, note: Callable[[str], None] = print
) -> list[Tracker]:
    """The trackers ``names`` asks for, each keeping ``run_dir``'s run (checked by :func:`check_trackers`).
    ``note`` takes a line a tracker has to say (W&B offline, where its store is)."""
    import importlib

    return [importlib.import_module(TRACKERS[n]).tracker_for_run(run_dir, group, note) for n in names]


def open_run_group(names: Iterable[str], store_dir: Path) -> RunGroup:
    """The group a comparison's runs go in, with a parent run from each tracker that keeps one
    (its module's ``open_parent_run``: MLflow's; the same parent again when the comparison reruns)."""
    import importlib

    group = RunGroup(store_dir.name, store_dir)
    for name in names:
        module = importlib.import_module(TRACKERS[name])
        if hasattr(module, "open_parent_run"):
            group.parents[name] = module.open_parent_run(group)
    return group


def close_run_group(group: RunGroup, outcome: str = "finished") -> None:
    import importlib

    for name, run_id in group.parents.items():
        importlib.import_module(TRACKERS[name]).close_parent_run(group, run_id, outcome)


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A run's configuration as the flat scalar settings trackers compare runs by."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            out[prefix + key] = value
        elif isinstance(value, list | tuple):
            out[prefix + key] = ",".join(str(v) for v in value)
        elif value is not None:
            out[prefix + key] = str(value)
    return out


def summary_of_run(run: dict[str, Any], files: Sequence[Path] = ()) -> RunSummary:
    """A :class:`RunSummary` of a finished run, from its ``run.json`` payload; ``files`` its run
    directory's files to keep with it, the PNGs among them also shown as images."""
    keys = ("compute_fraction", "compute_saved_frac", "train_compute_fraction", "train_compute_saved_frac",
            "train_flops", "baseline_train_flops", "bn_recalibration_flops", "valid_flops", "wall_time_s")  # fmt: skip
    scalars = {PREFIX + k: float(run[k]) for k in keys if isinstance(run.get(k), int | float)}
    scalars.update({f"{PREFIX}final/{k}": float(v) for k, v in run.get("metrics", {}).items()})
    wait = run.get("data_wait") or {}
    if isinstance(wait.get("wait_frac"), int | float):
        scalars[PREFIX + "data_wait_frac"] = float(wait["wait_frac"])
    lines = ["| figure | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in scalars.items()]
    return RunSummary(
        step=max(int(run.get("steps", 1)) - 1, 0),
        scalars=scalars,
        hparams=flat_hparams(run.get("config", {})),
        text="\n".join(lines),
        images={PREFIX + path.stem: path for path in files if path.suffix == ".png"},
        files=list(files),
    )


class _Guarded:
    """The trackers, each call guarded: one that fails is dropped with a warning, the run goes on."""

    def __init__(self, trackers: Sequence[Tracker], warn: Callable[[str], None]):
        self.trackers, self.warn = list(trackers), warn

    def call(self, method: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker must never stop the run it watches
                self.trackers.remove(tracker)
                self.warn(f"{tracker.name} stopped logging ({type(exc).__name__}: {exc}); the run goes on")
                with contextlib.suppress(Exception):  # it has failed already; the warning said so
                    tracker.close()
