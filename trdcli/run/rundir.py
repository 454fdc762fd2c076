"""The run directory: its file names, the checkpoint a run resumes from, and the finished run's files.

Layout (docs/cli.md, "The run directory"): ``run.json``, ``history.csv``, ``model.pth`` (the trained weights),
``checkpoint.pth`` + ``checkpoint.json`` (weights, optimizer and progress after the last
complete epoch) and ``schedule.png``. Every file is written atomically, so an interrupted
write leaves the previous version, never half a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trdcli.core.errors import RunDirError
from trdcli.core.recipes import Recipe
from trdcli.run.config import TrainConfig
from trdcli.run.fileio import atomic_write, atomic_write_text
from trdcli.run.results import RunResult, history_csv, run_json

RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
WEIGHTS_FILE = "model.pth"
EMA_WEIGHTS_FILE = "model_ema.pth"  # with --ema: the averaged weights, in the architecture's layout too
CHECKPOINT_FILE = "checkpoint.pth"
EMA_CHECKPOINT_FILE = "checkpoint_ema.pth"
PROGRESS_FILE = "checkpoint.json"
PLOT_FILE = "schedule.png"


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.arch}-{config.schedule.name}"


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished or a started run."""
    return (run_dir / RUN_FILE).exists() or (run_dir / PROGRESS_FILE).exists()


def create_run_dir(run_dir: Path, resuming: bool) -> Path:
    """Make ``run_dir``; a new run never overwrites one that is there already."""
    if not resuming and holds_run(run_dir):
        raise RunDirError(
            f"{run_dir} already holds a run; choose another `out`, or continue it with `resume` {run_dir}",
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from exc
    return run_dir


def run_identity(config: TrainConfig, classes: list[str]) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {
        "arch": config.arch,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "full_px": config.size_px,
        "schedule": config.schedule.describe(),
        "bn_mode": config.bn_mode,
        "tail_lr_frac": config.tail_lr_frac,
        "recipe": config.recipe.describe(),
        "ema_decay": config.ema_decay,
        "classes": classes,
    }


# What runs checkpointed before an identity key existed used: they resume as before.
_IDENTITY_BEFORE_KEY_EXISTED = {
    "bn_mode": "shared", "tail_lr_frac": None, "recipe": Recipe().describe(), "ema_decay": None,
}  # fmt: skip


@dataclass
class Progress:
    """Where a run stands after its last complete epoch: what ``checkpoint.json`` holds."""

    epochs_done: int = 0
    # The steps so far, counted by fit, epoch and resolution (StepGroups, as dicts): a few hundred
    # entries for an ImageNet run, where one record per step would be 450,000.
    step_groups: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    lr: float = 0.0
    run: dict[str, Any] = field(default_factory=dict)  # run_identity()


def load_progress(run_dir: Path, identity: dict[str, Any], epochs: int) -> Progress:
    """The progress of the interrupted run in ``run_dir``; refuses a run that differs from ``identity``."""
    progress_path = run_dir / PROGRESS_FILE
    if not progress_path.is_file() or not (run_dir / CHECKPOINT_FILE).is_file():
        raise RunDirError(f"`resume` {run_dir}: no checkpoint there ({CHECKPOINT_FILE} and {PROGRESS_FILE})")
    try:
        progress = Progress(**_step_groups_from_records(json.loads(progress_path.read_text())))
    except (OSError, ValueError, TypeError) as exc:
        raise RunDirError(f"`resume` {run_dir}: unreadable checkpoint ({exc})") from exc
    for key, value in identity.items():
        saved = progress.run.get(key, _IDENTITY_BEFORE_KEY_EXISTED.get(key))
        if saved != value:
            if isinstance(saved, dict) and isinstance(value, dict):  # name what differs, not the whole recipe
                differ = [k for k in value if saved.get(k) != value[k]]
                saved = ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
                value = ", ".join(f"{k}={value[k]!r}" for k in differ)
                raise RunDirError(f"`resume` {run_dir}: the run used {key} {saved}, this command has {value}")
            raise RunDirError(f"`resume` {run_dir}: the run used {key}={saved!r}, this command has {value!r}")
    # Every epoch trained but no run.json: stopped during recalibration, the final validation or the
    # save. Resuming finishes those from the checkpoint; a run with its run.json has nothing left.
    if progress.epochs_done > epochs or (progress.epochs_done == epochs and (run_dir / RUN_FILE).is_file()):
        raise RunDirError(f"`resume` {run_dir}: that run already finished all {epochs} epochs")
    return progress


def _step_groups_from_records(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written before step groups existed kept one record per step: count them."""
    from trdcli.core.cost import StepRecord, group_steps

    if "records" in saved:
        saved["step_groups"] = [asdict(g) for g in group_steps(StepRecord(**r) for r in saved.pop("records"))]
    return saved


def save_checkpoint(run_dir: Path, learn, progress: Progress) -> None:
    """Weights and optimizer state, then the progress that points at them (raises ``OSError``)."""
    from fastai.learner import save_model

    atomic_write(run_dir / CHECKPOINT_FILE, lambda tmp: save_model(tmp, learn.model, learn.opt))
    if getattr(learn, "ema", None) is not None:
        import torch

        atomic_write(run_dir / EMA_CHECKPOINT_FILE, lambda tmp: torch.save(learn.ema.state_dict(), tmp))
    atomic_write_text(run_dir / PROGRESS_FILE, json.dumps(asdict(progress)))


def load_checkpoint(run_dir: Path, learn, device) -> None:
    """Restore the weights and optimizer state of ``save_checkpoint`` into ``learn``."""
    from fastai.learner import load_model as load_fastai_checkpoint

    learn.create_opt()
    load_fastai_checkpoint(run_dir / CHECKPOINT_FILE, learn.model, learn.opt, device=device)
    if getattr(learn, "ema", None) is not None:
        import torch

        learn.ema.load_state_dict(torch.load(run_dir / EMA_CHECKPOINT_FILE, map_location=device, weights_only=True))


def save_run(result: RunResult, model, ema_model=None) -> None:
    """Write run.json, history.csv, the weights and schedule.png; a failure becomes a warning, not lost results."""
    import torch

    from trdcli.callbacks.batchnorm import full_resolution_model
    from trdcli.run.plots import save_schedule_plot

    run_dir = result.run_dir
    # The architecture's own layout (private BatchNorm copies of reduced steps dropped): it
    # loads into a freshly built model, here or anywhere else.
    weights = full_resolution_model(model).state_dict()
    try:
        atomic_write(run_dir / WEIGHTS_FILE, lambda tmp: torch.save(weights, tmp))
        if ema_model is not None:
            ema_weights = full_resolution_model(ema_model).state_dict()
            atomic_write(run_dir / EMA_WEIGHTS_FILE, lambda tmp: torch.save(ema_weights, tmp))
        atomic_write_text(run_dir / HISTORY_FILE, history_csv(result.history))
        atomic_write_text(run_dir / RUN_FILE, json.dumps(run_json(result), indent=2))
        save_schedule_plot(result, run_dir / PLOT_FILE)
    except OSError as exc:
        result.write_error = f"could not write the run directory {run_dir}: {exc.strerror or exc}"


def load_model(run_dir: str | Path, ema: bool = False):
    """The trained model of a run directory: ``model = trdcli.run.rundir.load_model("runs/<run>")``;
    ``ema=True``: its exponential moving average of the weights (a run trained with ``--ema``)."""
    import torch

    from trdcli.run.models import build_model

    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{run_dir} holds no readable {RUN_FILE} ({exc})") from exc
    model = build_model(info["arch"], info["num_classes"], full_px=info.get("full_px"))
    weights = run_dir / (EMA_WEIGHTS_FILE if ema else WEIGHTS_FILE)
    if ema and not weights.is_file():
        raise RunDirError(f"{run_dir} has no {EMA_WEIGHTS_FILE}: it was trained without an `ema`")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
