"""train(config) -> RunResult: builds the data, the model and the Learner with its callbacks, fits, saves.

Nothing here prints. Progress goes to a :class:`TrainObserver` the caller supplies (the
CLI draws a rich progress bar with it); results come back as a :class:`RunResult`, which
:mod:`trdcli.report` turns into tables, JSON and plots.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from trdcli.cost import ComputeSummary
from trdcli.data import BadImage, DataError
from trdcli.schedules import ConstantSchedule, ResolutionSchedule

CHECKPOINT_FILE = "checkpoint.pth"
PROGRESS_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.pth"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    data: Path
    arch: str = "resnet18"  # trains in minutes on a CPU at 64 px; the paper's family
    epochs: int = 5
    size_px: int = 224  # full training and evaluation resolution
    batch_size: int = 64
    lr: float = 3e-3  # fastai book's from-scratch one-cycle rate for Imagenette (ch. 7)
    lr_find: bool = False  # run fastai's lr_find at full resolution and use its valley
    schedule: ResolutionSchedule = field(default_factory=ConstantSchedule)
    seed: int = 0
    valid_pct: float | None = None
    workers: int | None = None  # None: all cores but one, at most 8
    weights: Path | None = None
    out_dir: Path | None = None
    resume: Path | None = None
    skip_bad_images: bool = False
    check_images: bool = True
    device: str | None = None  # None: cuda, then mps, then cpu
    mixed_precision: bool | None = None  # None: on for CUDA only
    channels_last: bool | None = None  # None: on for CUDA only
    min_scale: float = 0.35  # RandomResizedCrop's smallest area: fastai's Imagenette default for short runs
    resize_mode: str = "bilinear"
    bn_recalibrate: int = 0  # batches at full resolution to re-estimate BatchNorm statistics after training

    def __post_init__(self):
        for label in ("epochs", "size_px", "batch_size"):
            value = getattr(self, label)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label.replace('_px', '')} must be a positive integer, got {value!r}")
        if not self.lr_find and not (isinstance(self.lr, float | int) and 0 < self.lr < 10):
            raise ValueError(f"lr must be a positive number below 10, got {self.lr!r}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.bn_recalibrate < 0:
            raise ValueError(f"bn_recalibrate must be 0 or more batches, got {self.bn_recalibrate}")
        if self.size_px < self.schedule.min_px:
            raise ValueError(f"size {self.size_px} px is below the {self.schedule.min_px} px the network needs")
        self.schedule.validate(self.size_px)

    def describe(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                value.describe()
                if isinstance(value, ResolutionSchedule)
                else (str(value) if isinstance(value, Path) else value)
            )
        return out


class TrainObserver:
    """Receives progress while :func:`train` runs. Every method is optional; the defaults do nothing."""

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


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line, unwrapping a DataLoader worker's re-raised error."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and len(lines) > 1:
        # torch re-raises a worker's exception with the worker's traceback; the cause is last.
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the last completed epoch is saved in ``run_dir`` to resume from."""

    def __init__(self, run_dir: Path, epochs_done: int, saved: bool):
        self.run_dir = run_dir
        self.epochs_done = epochs_done
        self.saved = saved
        super().__init__(f"interrupted after {epochs_done} complete epoch(s)")


@dataclass
class RunResult:
    """What a finished (or interrupted) run did, and what it cost."""

    config: TrainConfig
    classes: list[str]
    compute: ComputeSummary
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    step_px: list[int]
    wall_time_s: float
    run_dir: Path
    device: str
    versions: dict[str, str]
    train_images: int
    valid_images: int
    lr: float
    skipped_images: list[BadImage] = field(default_factory=list)
    ignored_files: int = 0  # non-image files in the class folders
    warnings: list[str] = field(default_factory=list)
    bn_recalibration_flops: int = 0
    write_error: str | None = None  # set when the run directory could not be written

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def versions() -> dict[str, str]:
    import fastai
    import torch
    import torchvision

    from trdcli import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "fastai": fastai.__version__,
        "trd": __version__,
    }


def pick_device(requested: str | None):
    import torch

    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {requested}: MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return str(device)


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.arch}-{config.schedule.name}"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def top5(inp, targ):
    """Top-5 accuracy (a fastai metric: named for the history table)."""
    from fastai.metrics import top_k_accuracy

    return top_k_accuracy(inp, targ, k=5)


def _make_callbacks(observer: TrainObserver, run_dir: Path, state: dict[str, Any]):
    """The fastai callbacks that report progress and checkpoint each epoch (built here to keep fastai imports lazy)."""
    from fastai.callback.core import Callback
    from fastai.learner import save_model

    class ReportProgress(Callback):
        order = 70  # after the Recorder (50) has smoothed the loss

        def before_fit(self):
            self._t_step = time.perf_counter()
            self._t_epoch = time.perf_counter()
            self._ips = None

        def before_epoch(self):
            self._t_epoch = time.perf_counter()

        def after_batch(self):
            if not self.learn.training:
                return
            now = time.perf_counter()
            ips = self.learn.xb[0].shape[0] / max(now - self._t_step, 1e-9)
            self._ips = ips if self._ips is None else 0.9 * self._ips + 0.1 * ips
            self._t_step = now
            step = self.learn.epoch * self.learn.n_iter + self.learn.iter
            px = self.learn.xb[0].shape[-1]
            observer.step_done(step, self.learn.epoch, px, float(self.learn.smooth_loss), self._ips)

        def before_validate(self):
            observer.validating(self.learn.epoch)

        def after_epoch(self):
            if self.learn.epoch < state["start_epoch"]:
                return  # an epoch a resumed fit skips: it ran before, and is in the history already
            names = self.learn.recorder.metric_names[1:-1]  # drop 'epoch' and 'time'
            values = self.learn.recorder.values[-1] if self.learn.recorder.values else []
            row: dict[str, Any] = {"epoch": self.learn.epoch}
            row.update({n: float(v) for n, v in zip(names, values, strict=False)})
            row["wall_s"] = time.perf_counter() - self._t_epoch
            trd = self.learn.trd
            pxs = [r.px for r in trd.records if r.epoch == self.learn.epoch and r.fit == trd.current_fit]
            row["steps_by_px"] = {str(px): pxs.count(px) for px in sorted(set(pxs), reverse=True)}
            state["history"].append(row)
            observer.epoch_done(row)
            self._t_step = time.perf_counter()

    class SaveCheckpoint(Callback):
        """After each epoch: weights + optimizer, and the progress to resume from."""

        order = 80

        def after_epoch(self):
            if self.learn.epoch < state["start_epoch"]:
                return
            try:
                tmp = run_dir / (CHECKPOINT_FILE + ".tmp")
                save_model(tmp, self.learn.model, self.learn.opt)
                os.replace(tmp, run_dir / CHECKPOINT_FILE)
                progress = {
                    "epochs_done": self.learn.epoch + 1,
                    "records": [asdict(r) for r in self.learn.trd.records],
                    "history": state["history"],
                    "wall_time_s": state["wall_before"] + time.perf_counter() - state["t_fit"],
                    "lr": state["lr"],
                    "run": state["identity"],
                }
                _atomic_write_text(run_dir / PROGRESS_FILE, json.dumps(progress))
                state["epochs_saved"] = self.learn.epoch + 1
            except OSError as exc:
                message = f"could not save the checkpoint to {run_dir}: {exc.strerror or exc}"
                if message not in state["warnings"]:
                    state["warnings"].append(message)
                    observer.warn(message)

    return [ReportProgress(), SaveCheckpoint()]


def run_identity(config: TrainConfig, classes: list[str]) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {
        "arch": config.arch,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "full_px": config.size_px,
        "schedule": config.schedule.describe(),
        "classes": classes,
    }


def _load_resume(config: TrainConfig, classes: list[str]) -> dict[str, Any]:
    run_dir = config.resume
    progress_path = run_dir / PROGRESS_FILE
    if not progress_path.is_file() or not (run_dir / CHECKPOINT_FILE).is_file():
        raise ValueError(f"--resume {run_dir}: no checkpoint there ({CHECKPOINT_FILE} and {PROGRESS_FILE})")
    try:
        progress = json.loads(progress_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--resume {run_dir}: unreadable checkpoint ({exc})") from exc
    for key, value in run_identity(config, classes).items():
        saved = progress.get("run", {}).get(key)
        if saved != value:
            raise ValueError(f"--resume {run_dir}: the run used {key}={saved!r}, this command has {value!r}")
    if progress["epochs_done"] >= config.epochs:
        raise ValueError(f"--resume {run_dir}: that run already finished all {config.epochs} epochs")
    return progress


def train(config: TrainConfig, observer: TrainObserver | None = None) -> RunResult:
    """Train ``config.arch`` on ``config.data`` under ``config.schedule``; write the run directory.

    Raises :class:`~trdcli.data.DataError` or ``ValueError`` for unusable input (before any
    training), and :class:`TrainingInterrupted` on Ctrl-C (after saving a checkpoint).
    """
    from trdcli import data as data_mod
    from trdcli.models import build_model, check_arch, load_weights

    observer = observer or TrainObserver()
    check_arch(config.arch)
    observer.stage("scanning images")

    folder = data_mod.scan_image_folder(config.data, config.valid_pct, config.seed)
    workers = data_mod.default_workers() if config.workers is None else config.workers
    if config.check_images:
        observer.stage(f"checking {len(folder.train) + len(folder.valid):,} images")
        # Nothing else runs yet: decode on every core.
        bad = data_mod.find_bad_images([p for p, _ in folder.train + folder.valid], workers=os.cpu_count() or 1)
        if bad and not config.skip_bad_images:
            listed = "; ".join(f"{b.path} ({b.reason})" for b in bad[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise DataError(f"{len(bad)} unreadable image(s): {listed}{more}. Fix them or pass --skip-bad-images")
        if bad:
            folder = data_mod.drop_bad_images(folder, bad)
            observer.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0].path}")

    observer.stage("building the model")
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.learner import load_model as load_checkpoint
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed

    from trdcli.callback import StepRecord, TRDCallback
    from trdcli.cost import FlopsTable, default_cache

    resume = _load_resume(config, folder.classes) if config.resume else None
    run_dir = Path(config.resume or config.out_dir or default_run_dir(config))
    if not resume and ((run_dir / "run.json").exists() or (run_dir / PROGRESS_FILE).exists()):
        raise ValueError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from exc

    set_seed(config.seed)
    device = pick_device(config.device)
    dls = data_mod.build_dataloaders(
        folder,
        config.size_px,
        config.batch_size,
        workers=workers,
        device=device,
        min_scale=config.min_scale,
    )
    model = build_model(config.arch, folder.num_classes)
    warnings: list[str] = []
    if config.weights:
        skipped_keys = load_weights(model, config.weights)
        if skipped_keys:
            warnings.append(
                f"--weights: left out {len(skipped_keys)} tensor(s) whose shapes differ, e.g. {skipped_keys[0]}"
            )
    flops = FlopsTable.for_arch(config.arch, folder.num_classes, cache=default_cache())
    trd = TRDCallback(schedule=config.schedule, mode=config.resize_mode, flops=flops)
    state: dict[str, Any] = {
        "history": [],
        "warnings": warnings,
        "epochs_saved": 0,
        "wall_before": 0.0,
        "lr": config.lr,
        "identity": run_identity(config, folder.classes),
    }
    metrics = [accuracy] + ([top5] if folder.num_classes > 5 else [])
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=metrics, cbs=[trd])
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = lambda *args: None
    use_amp = config.mixed_precision if config.mixed_precision is not None else device.type == "cuda"
    use_channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    if use_channels_last:
        learn.to_channelslast(use_amp=False)
    if use_amp:
        learn.to_fp16()

    start_epoch = 0
    lr = config.lr
    if resume:
        learn.create_opt()
        load_checkpoint(run_dir / CHECKPOINT_FILE, learn.model, learn.opt, device=device)
        start_epoch = resume["epochs_done"]
        trd.resume_from([StepRecord(**r) for r in resume["records"]])
        state.update(history=resume["history"], wall_before=resume["wall_time_s"], epochs_saved=start_epoch)
        lr = resume["lr"]
    elif config.lr_find:
        observer.stage("finding a learning rate (lr_find)")
        lr = float(learn.lr_find(show_plot=False).valley)
    state.update(lr=lr, start_epoch=start_epoch)

    steps_per_epoch = len(dls.train)
    observer.fit_started(steps_per_epoch * config.epochs, steps_per_epoch, config.epochs, start_epoch)
    extra_cbs = _make_callbacks(observer, run_dir, state)
    state["t_fit"] = time.perf_counter()
    try:
        learn.fit_one_cycle(config.epochs, lr, start_epoch=start_epoch, cbs=extra_cbs)
    except KeyboardInterrupt:
        raise TrainingInterrupted(run_dir, state["epochs_saved"], saved=state["epochs_saved"] > 0) from None
    except DataError as exc:  # an image became unreadable after the check (deleted, overwritten)
        if state["epochs_saved"]:
            saved = f"; epochs 1-{state['epochs_saved']} are saved: fix it and add --resume {run_dir}"
            raise DataError(f"{one_line(exc)}{saved}") from exc
        raise
    wall_time_s = state["wall_before"] + time.perf_counter() - state["t_fit"]

    bn_flops = 0
    last = state["history"][-1]
    if config.bn_recalibrate:
        from trdcli.bn import recalibrate_batchnorm

        observer.stage(f"recalibrating BatchNorm on {config.bn_recalibrate} batches")
        images = recalibrate_batchnorm(learn.model, dls.train, config.bn_recalibrate)
        bn_flops = images * flops.at(config.size_px).forward_flops
        # The last epoch validated before recalibration: measure again with the new statistics.
        valid_loss, *metric_values = learn.validate()
        last = {"valid_loss": valid_loss, **dict(zip([m.name for m in learn.metrics], metric_values, strict=True))}
    metrics_out = {"top1": float(last["accuracy"])}
    if "top5" in last:
        metrics_out["top5"] = float(last["top5"])
    metrics_out["train_loss"] = float(state["history"][-1]["train_loss"])
    metrics_out["valid_loss"] = float(last["valid_loss"])

    summary = trd.summary()
    summary = replace(summary, valid_flops=len(folder.valid) * config.epochs * flops.at(config.size_px).forward_flops)
    result = RunResult(
        config=config,
        classes=folder.classes,
        compute=summary,
        metrics=metrics_out,
        history=state["history"],
        step_px=[r.px for r in trd.records],
        wall_time_s=wall_time_s,
        run_dir=run_dir,
        device=device_name(device),
        versions=versions(),
        train_images=len(folder.train),
        valid_images=len(folder.valid),
        lr=lr,
        skipped_images=folder.skipped,
        ignored_files=folder.ignored_files,
        warnings=state["warnings"],
        bn_recalibration_flops=bn_flops,
    )
    save_run(result, learn.model)
    return result


def save_run(result: RunResult, model) -> None:
    """Write run.json, history.csv, the weights and schedule.png; a failure becomes a warning, not lost results."""
    import torch

    from trdcli import report

    run_dir = result.run_dir
    try:
        torch.save(model.state_dict(), run_dir / WEIGHTS_FILE)
        _atomic_write_text(run_dir / "history.csv", report.history_csv(result))
        _atomic_write_text(run_dir / "run.json", json.dumps(report.run_json(result), indent=2))
        report.save_schedule_plot(result, run_dir / "schedule.png")
    except OSError as exc:
        result.write_error = f"could not write the run directory {run_dir}: {exc.strerror or exc}"


def load_model(run_dir: str | Path):
    """The trained model of a run directory: ``model = trdcli.train.load_model("runs/<run>")``."""
    import torch

    from trdcli.models import build_model

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    model = build_model(info["arch"], info["num_classes"])
    model.load_state_dict(torch.load(run_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()
