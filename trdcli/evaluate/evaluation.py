"""``evaluate(EvalConfig) -> EvalResult``: what a trained network does beyond its own validation number.

1. **Test-resolution sweep**: top-1/top-5 at several test sizes, each with its forward FLOPs
   per image, optionally with BatchNorm recalibrated at that size first (FixRes, Touvron et
   al. 2019, arXiv 1906.06423). At the training size it reproduces the run's own accuracy.
2. **Shape and texture probes** (:mod:`trdcli.evaluate.probes`) at the training size: patch shuffle,
   low-pass, and the low-frequency bias of hybrid images; accuracy and retention (accuracy /
   clean accuracy). Deterministic for a seed.
3. **Cue-conflict shape bias** (:mod:`trdcli.evaluate.cue_conflict`) for ImageNet-1k networks.

Evaluation reads the run directory and writes only ``eval.json`` and ``eval.png`` beside it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trdcli.core.errors import ConfigError, DataError, RunDirError
from trdcli.run.observer import TrainObserver

DEFAULT_SIZE_FRACS = (0.5, 0.625, 0.75, 0.875, 1.0, 1.15)
SHUFFLE_GRIDS = (2, 4, 8)
LOW_PASS_RADII = (0.5, 0.25, 0.125)
HYBRID_RADIUS = 0.25  # low frequencies of one image below a quarter of Nyquist, high ones of another above
EVAL_FILE = "eval.json"
EVAL_PLOT = "eval.png"


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate: a run directory, or ``arch`` + ``weights`` + ``data`` for a model trained elsewhere."""

    run_dir: Path | None = None
    data: Path | None = None  # default: the folder the run trained on
    arch: str | None = None
    weights: Path | None = None
    size_px: int | None = None  # the training size of a model trained elsewhere
    sizes_px: tuple[int, ...] | None = None  # default: DEFAULT_SIZE_FRACS of the training size
    bn_recalibrate: int = 0  # batches of training images at each test size, before measuring there
    probes: bool = True
    cue_conflict: Path | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str | None = None
    seed: int = 0
    out_dir: Path | None = None  # where eval.json goes; default: the run directory, or beside the weights
    ema: bool = False  # the run's moving average of the weights (model_ema.pth), written to RUN/ema/


@dataclass
class EvalResult:
    arch: str
    classes: list[str]
    train_px: int
    data: Path
    valid_images: int
    run_top1: float | None  # the run's own final top-1, to compare with the sweep at train_px
    sweep: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)
    cue_conflict: dict[str, Any] | None = None
    out_dir: Path | None = None
    write_error: str | None = None


@dataclass
class _Subject:
    """The network under evaluation and where its data is."""

    model: Any
    arch: str
    classes: list[str]
    train_px: int
    data: Path
    valid_pct: float | None
    split_seed: int
    run_top1: float | None
    out_dir: Path
    folder: Any = None  # the scanned data folder, when loading the model needed it already


def evaluate(config: EvalConfig, observer: TrainObserver | None = None) -> EvalResult:
    """Sweep, probes and (with ``cue_conflict``) shape bias of one trained network; writes eval.json."""
    from trdcli.data.folders import scan_image_folder
    from trdcli.run.device import pick_device

    observer = observer or TrainObserver()
    observer.stage("loading the model")
    subject = _load_subject(config)
    # Checked before minutes of evaluation: a cue-conflict folder needs an ImageNet-1k network.
    stimuli = _stimuli(subject, config.cue_conflict) if config.cue_conflict is not None else None
    device = pick_device(config.device)
    subject.model.to(device).eval()
    folder = subject.folder or scan_image_folder(subject.data, subject.valid_pct, subject.split_seed)
    if folder.classes != subject.classes:
        raise DataError(
            f"{subject.data} has {folder.num_classes} classes ({', '.join(folder.classes[:3])}, ...); the model was "
            f"trained on {len(subject.classes)} ({', '.join(subject.classes[:3])}, ...)"
        )
    result = EvalResult(subject.arch, subject.classes, subject.train_px, subject.data, len(folder.valid),
                        subject.run_top1, out_dir=subject.out_dir)  # fmt: skip
    sizes = config.sizes_px or tuple(sorted({round(subject.train_px * f) for f in DEFAULT_SIZE_FRACS}))
    result.sweep = [_sweep_row(subject, folder, px, config, device, observer) for px in sizes]
    if config.probes:
        observer.stage(f"shape and texture probes at {subject.train_px} px")
        # The sweep's row at the training size, unless recalibrated there, is the clean accuracy already.
        at_train = [r["top1"] for r in result.sweep if r["px"] == subject.train_px and not r["bn_recalibrated"]]
        result.probes = _probe_rows(subject, folder, config, device, at_train[0] if at_train else None)
    if stimuli is not None:
        observer.stage("cue-conflict shape bias")
        result.cue_conflict = _cue_conflict(subject, stimuli, config, device)
    _save(result)
    return result


def _load_subject(config: EvalConfig) -> _Subject:
    from trdcli.run.models import build_model, load_weights
    from trdcli.run.rundir import RUN_FILE, load_model

    if config.run_dir is not None:
        if config.arch or config.weights:
            raise ConfigError("give a run directory, or `arch` with `weights`, not both")
        try:
            info = json.loads((Path(config.run_dir) / RUN_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise RunDirError(
                f"{config.run_dir} holds no readable {RUN_FILE}: is it a `trd train` run directory?"
            ) from exc
        data = config.data or Path(info["config"]["data"])
        top1 = info["metrics"].get("ema_top1") if config.ema else info["metrics"]["top1"]
        out_dir = Path(config.run_dir) / "ema" if config.ema else Path(config.run_dir)
        return _Subject(load_model(config.run_dir, ema=config.ema), info["arch"], info["classes"], info["full_px"],
                        Path(data), info["config"].get("valid_pct"), info["config"].get("seed", 0), top1,
                        out_dir)  # fmt: skip
    if config.ema:
        raise ConfigError("`ema` reads a run directory's model_ema.pth; with `weights`, give the EMA's file itself")
    if not (config.arch and config.weights and config.data and config.size_px):
        raise ConfigError("without a run directory, give `arch`, `weights`, the training size `size_px` and DATA")
    from trdcli.data.folders import scan_image_folder

    folder = scan_image_folder(config.data)
    classes = folder.classes
    model = build_model(config.arch, len(classes), full_px=config.size_px)
    load_weights(model, config.weights, len(classes))
    out_dir = config.out_dir or Path(config.weights).parent
    return _Subject(model, config.arch, classes, config.size_px, Path(config.data), None, 0, None, out_dir, folder)


def _valid_loader(items, px: int, config: EvalConfig, device):
    from trdcli.data.loaders import default_workers, image_dataloader

    workers = default_workers() if config.workers is None else config.workers
    return image_dataloader(items, px, config.batch_size, False, workers=workers, device=device)


def _predict(model, loader, transform=None):
    """(logits, labels) over ``loader``, with ``transform(images, batch_index)`` applied first if given."""
    import torch

    logits, labels = [], []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            images, targets = _plain(batch)
            if transform is not None:
                images = transform(images, i)
            logits.append(model(images).float().cpu())
            labels.append(targets.cpu())
    return torch.cat(logits), torch.cat(labels)


def _plain(batch):
    """fastai's batch as plain tensors (its TensorImage and TensorCategory refuse to mix in arithmetic)."""
    import torch

    return tuple(t.as_subclass(torch.Tensor) for t in batch)


def _accuracy(logits, labels, k: int = 1) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels.view(-1, 1)).any(dim=1).float().mean())


def _sweep_row(subject: _Subject, folder, px: int, config: EvalConfig, device, observer) -> dict[str, Any]:
    from trdcli.callbacks.batchnorm import recalibrate_batchnorm
    from trdcli.run.flops_cache import arch_flops, default_cache

    observer.stage(f"validating at {px} px")
    model = subject.model
    if config.bn_recalibrate:
        # FixRes: statistics at the test size, from training images prepared as the test images are.
        model = copy.deepcopy(subject.model)
        recalibrate_batchnorm(model, _valid_loader(folder.train, px, config, device), config.bn_recalibrate)
        model.eval()
    logits, labels = _predict(model, _valid_loader(folder.valid, px, config, device))
    flops = arch_flops(subject.arch, len(subject.classes), full_px=subject.train_px, cache=default_cache()).at(px)
    row = {"px": px, "top1": _accuracy(logits, labels), "forward_flops_per_image": flops.forward_flops}
    if len(subject.classes) > 5:
        row["top5"] = _accuracy(logits, labels, 5)
    row["bn_recalibrated"] = bool(config.bn_recalibrate)
    return row


def _probe_rows(subject: _Subject, folder, config: EvalConfig, device, clean: float | None) -> dict[str, Any]:
    import torch

    from trdcli.evaluate import probes

    px = subject.train_px
    loader = _valid_loader(folder.valid, px, config, device)
    if clean is None:
        clean = _accuracy(*_predict(subject.model, loader))

    def seeded(i: int) -> torch.Generator:
        return torch.Generator().manual_seed(config.seed * 1_000_003 + i)

    def row(key: str, value, transform) -> dict[str, Any]:
        top1 = _accuracy(*_predict(subject.model, loader, transform))
        return {key: value, "top1": top1, "retention": top1 / clean if clean else float("nan")}

    return {
        "px": px,
        "clean_top1": clean,
        "patch_shuffle": [
            row("grid", g, lambda x, i, g=g: probes.patch_shuffle(x, g, seeded(i))) for g in SHUFFLE_GRIDS
        ],
        "low_pass": [row("radius_frac", r, lambda x, i, r=r: probes.low_pass(x, r)) for r in LOW_PASS_RADII],
        "hybrid": _hybrid_row(subject, folder, config, device),
    }


def _hybrid_row(subject: _Subject, folder, config: EvalConfig, device) -> dict[str, Any]:
    """Low frequencies of image A + high frequencies of image B of another class: how often the answer is A's."""
    import torch

    from trdcli.evaluate.probes import hybrid

    items = folder.valid
    # Validation items are grouped by class: half the set away is another class, except where
    # one class holds more than half of the images (those pairs are left out).
    partners = items[len(items) // 2 :] + items[: len(items) // 2]
    px = subject.train_px
    low_loader = _valid_loader(items, px, config, device)
    high_loader = _valid_loader(partners, px, config, device)
    for_low = for_high = pairs = 0
    with torch.no_grad():
        for low_batch, high_batch in zip(low_loader, high_loader, strict=True):
            (low_images, low_labels), (high_images, high_labels) = _plain(low_batch), _plain(high_batch)
            predicted = subject.model(hybrid(low_images, high_images, HYBRID_RADIUS)).argmax(dim=1)
            differ = low_labels != high_labels
            for_low += int(((predicted == low_labels) & differ).sum())
            for_high += int(((predicted == high_labels) & differ).sum())
            pairs += int(differ.sum())
    decided = for_low + for_high
    return {
        "radius_frac": HYBRID_RADIUS,
        "pairs": pairs,
        "low_frequency_decisions": for_low,
        "high_frequency_decisions": for_high,
        "low_frequency_bias": for_low / decided if decided else float("nan"),
    }


def _stimuli(subject: _Subject, folder: Path):
    """(the run's class positions of each category, the conflict stimuli) or a DataError."""
    from trdcli.evaluate import cue_conflict

    return cue_conflict.category_indices(subject.classes), cue_conflict.find_stimuli(folder)


def _cue_conflict(subject: _Subject, stimuli, config: EvalConfig, device) -> dict[str, Any]:
    import torch

    from trdcli.evaluate import cue_conflict

    indices, stimuli = stimuli
    loader = _valid_loader([(s.path, 0) for s in stimuli], subject.train_px, config, device)
    logits, _ = _predict(subject.model, loader)
    decided = cue_conflict.decisions(torch.softmax(logits, dim=1).numpy(), indices)
    bias = cue_conflict.score(stimuli, decided)
    return {
        "images": bias.images,
        "shape_decisions": bias.shape_decisions,
        "texture_decisions": bias.texture_decisions,
        "shape_bias": bias.shape_bias,
        "shape_bias_ci95": list(bias.shape_bias_ci95),
        "cue_accuracy": bias.cue_accuracy,
        "by_category": bias.by_category,
    }


def class_shape_bias(model, classes: list[str], stimuli_dir: Path, px: int, *, workers: int = 0, device=None):
    """Shape bias on conflict stimuli whose categories are the network's own classes (the demo's shapes).

    ``classes``: the network's classes in the order of its outputs (a run's ``classes``, as run.json has them).
    """
    import torch

    from trdcli.data.loaders import image_dataloader
    from trdcli.evaluate import cue_conflict

    device = device or torch.device("cpu")
    stimuli = cue_conflict.find_stimuli(stimuli_dir, classes)
    loader = image_dataloader([(s.path, 0) for s in stimuli], px, 64, False, workers=workers, device=device)
    logits, _ = _predict(model.to(device).eval(), loader)
    return cue_conflict.score(stimuli, [classes[i] for i in logits.argmax(dim=1).tolist()], classes)


def eval_json(result: EvalResult) -> dict[str, Any]:
    return {
        "arch": result.arch,
        "num_classes": len(result.classes),
        "train_px": result.train_px,
        "data": str(result.data),
        "valid_images": result.valid_images,
        "run_top1": result.run_top1,
        "sweep": result.sweep,
        "probes": result.probes,
        "cue_conflict": result.cue_conflict,
        "flops_unit": "FLOPs, 2 per multiply-add (torch.utils.flop_counter), forward only, per image",
    }


def _save(result: EvalResult) -> None:
    from trdcli.run.fileio import atomic_write_text
    from trdcli.run.plots import save_eval_plot

    try:
        result.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(result.out_dir / EVAL_FILE, json.dumps(eval_json(result), indent=2))
        save_eval_plot(
            result.sweep, result.train_px, f"{result.arch}: accuracy by test size", result.out_dir / EVAL_PLOT
        )
    except OSError as exc:
        result.write_error = f"could not write {EVAL_FILE} to {result.out_dir}: {exc.strerror or exc}"
