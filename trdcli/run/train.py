"""``train(config) -> RunResult``: data, model and Learner with its callbacks, fit, save. Reads top to bottom.

Nothing here prints: progress goes to a :class:`~trdcli.run.observer.TrainObserver` the caller
supplies, and the result comes back as a :class:`~trdcli.run.results.RunResult`, which the
caller renders. Errors the user can fix are :class:`~trdcli.core.errors.TRDError`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from trdcli.core.errors import ConfigError, DataError, TrainingDiverged, TrainingInterrupted, one_line
from trdcli.data.folders import ImageFolder
from trdcli.run.config import TrainConfig
from trdcli.run.observer import TrainObserver, WarningLog
from trdcli.run.results import RunResult
from trdcli.trackers.interface import RunGroup, outcome_of

# --size above this multiple of the images' own shorter side only upsamples: warn.
_UPSAMPLE_WARN_RATIO = 2.0


def train(config: TrainConfig, observer: TrainObserver | None = None, group: RunGroup | None = None) -> RunResult:
    """Train ``config.arch`` on ``config.data`` under ``config.schedule``; write the run directory.

    Raises :class:`~trdcli.core.errors.TRDError` for unusable input (before any training) and
    :class:`~trdcli.core.errors.TrainingInterrupted` on Ctrl-C or SIGTERM (after saving a
    checkpoint). Under ``torchrun`` every process calls it: they train one run together,
    and rank 0 alone reports to ``observer`` and writes (:mod:`trdcli.run.distributed`).
    """
    from trdcli.run import distributed
    from trdcli.run.device import pick_device

    ranks = distributed.launch_ranks()
    _check_launch(config, ranks)
    device = pick_device(config.device, ranks.local_rank, ranks.distributed)
    distributed.start(ranks, device)
    try:
        return _train(config, observer or TrainObserver(), ranks, device, group)
    finally:
        distributed.stop(ranks)


def _train(config: TrainConfig, observer: TrainObserver, ranks, device, group) -> RunResult:
    from fastai.torch_core import set_seed

    from trdcli.run.callbacks import FitState
    from trdcli.run.distributed import on_main
    from trdcli.run.models import check_arch
    from trdcli.run.rundir import create_run_dir, default_run_dir, run_identity

    log = WarningLog(observer)
    _warn_if_tail_stalls(config, log)
    # 1. The data: scan the folder, check every image once.
    check_arch(config.arch)
    folder = _prepare_data(config, log, ranks)
    # 2. The model, checked against the device's memory before anything is allocated.
    observer.stage("building the model")
    set_seed(config.seed)
    _check_model_takes_the_plan(config, folder)
    model = _model_that_fits(config, folder.num_classes, device, ranks)
    # Weights of another size or variant stop here too, before a run directory exists.
    _load_weights(config, model, folder.num_classes, log)
    compiled = _compile(config, model, folder, device, log) if config.compile else None
    # Which prepared copy reduced steps read: a bad `prepared` stops here, before a run directory exists.
    copies = _prepared_copies(config, folder, log, ranks)
    # 3. The run directory (rank 0 makes it); a resumed run must be the same run.
    identity = run_identity(config, folder.classes)
    progress = on_main(lambda: _progress(config, identity, log), ranks)
    run_dir = on_main(
        lambda: create_run_dir(Path(config.resume or config.out_dir or default_run_dir(config)), bool(config.resume)),
        ranks,
    )
    learn, flops = _build_learner(config, folder, copies, model, device, log, ranks)
    feed = _check_feed(config, folder, copies, device, learn, log, ranks)
    state = FitState(run_dir, observer, identity, progress.lr, log, ranks=ranks, compile_record=compiled)
    tracker = _add_tracker(learn, config, state, group)
    ended: BaseException | None = None
    try:
        # 4. Where the fit starts: a checkpoint, lr_find's suggestion, or the given rate.
        _start_point(learn, config, progress, state, device)
        # 5. The fit.
        _fit(learn, config, state)
        # 6. BatchNorm recalibration at full resolution; the final metrics.
        metrics = _final_metrics(learn, state)
        # 7. The result, written to the run directory by rank 0.
        result = _finish(learn, config, folder, state, metrics, flops, device, feed)
        if tracker is not None:
            _track_result(tracker, result)
        return result
    except BaseException as exc:
        ended = exc
        raise
    finally:
        if tracker is not None:
            tracker.close(outcome_of(ended))


def _add_tracker(learn, config: TrainConfig, state, group):
    """Rank 0's trackers (one set of files per run, not per process), as a callback on ``learn``;
    ``group``: the comparison the run belongs to."""
    if not config.log_to or not state.ranks.is_main:
        return None
    from trdcli.trackers.callback import TRDTracker
    from trdcli.trackers.interface import make_trackers

    try:
        trackers = make_trackers(config.log_to, state.run_dir, group, note=state.log.note)
    except Exception as exc:  # noqa: BLE001 - a tracker must never stop the run it would watch
        names = ", ".join(config.log_to)
        state.log.warn(f"`log_to` {names} could not start ({type(exc).__name__}: {exc}); training without it")
        return None
    tracker = TRDTracker(*trackers, config=config.describe(), warn=state.log.warn, finish_after_fit=False)
    learn.add_cb(tracker)
    return tracker


def _track_result(tracker, result: RunResult) -> None:
    from trdcli.run.results import run_json
    from trdcli.run.rundir import HISTORY_FILE, PLOT_FILE, RUN_FILE
    from trdcli.trackers.interface import summary_of_run

    files = [result.run_dir / name for name in (RUN_FILE, HISTORY_FILE, PLOT_FILE)]
    tracker.finish(summary_of_run(run_json(result), [f for f in files if f.is_file()]))


# Below this share of the peak rate, a full-resolution tail barely moves the weights.
_STALLED_TAIL_LR_FRAC = 0.1


def _warn_if_tail_stalls(config: TrainConfig, log: WarningLog) -> None:
    tail_start = config.schedule.full_tail_start_frac
    if tail_start >= 1 or config.tail_lr_frac is not None:
        return
    lr_frac = config.lr_curve.lr_frac_at(tail_start)
    if lr_frac < _STALLED_TAIL_LR_FRAC:
        log.warn(
            f"the full-resolution tail (from {tail_start:g} of the run) starts at {lr_frac:.1%} of the peak "
            "learning rate under one-cycle, too little to adapt the weights to full resolution: "
            "set `tail_lr` (0.3 was worth 2.7 to 8 points of top-1 in trd's runs, docs/method.md)"
        )


def _check_launch(config: TrainConfig, ranks) -> None:
    """What a distributed launch needs that one process does not."""
    from trdcli.run.distributed import check_accelerate

    if not ranks.distributed:
        return
    check_accelerate()
    if config.batch_size % ranks.world_size:
        raise ConfigError(
            f"`batch_size` {config.batch_size} is the global batch and must divide among the "
            f"{ranks.world_size} processes"
        )
    if config.lr_find:
        raise ConfigError(
            "`lr` find runs in one process: run it without the launcher, then pass the rate it finds as `lr`"
        )


def _progress(config: TrainConfig, identity, log: WarningLog):
    """Where the run starts: nowhere yet, or the checkpoint of the run it resumes (at a new rate if given)."""
    from trdcli.run.rundir import Progress, load_progress

    if not config.resume:
        return Progress(lr=config.peak_lr)
    progress = load_progress(config.resume, identity, config.epochs)
    if config.lr is not None and config.lr != progress.lr:
        log.warn(f"resuming at `lr` {config.lr:g} instead of the run's {progress.lr:g}")
        progress.lr = config.lr
    return progress


def _prepare_data(config: TrainConfig, log: WarningLog, ranks) -> ImageFolder:
    from trdcli.data import folders as data

    observer = log.observer
    observer.stage("scanning images")
    folder = data.scan_image_folder(config.data, config.valid_pct, config.seed)
    short_side_px = data.median_short_side_px([path for path, _ in folder.train])
    if short_side_px and config.size_px > _UPSAMPLE_WARN_RATIO * short_side_px:
        log.warn(
            f"size {config.size_px} px is {config.size_px / short_side_px:.1f}x the images' median shorter side "
            f"({short_side_px} px): every image is upsampled, which costs compute and adds no detail"
        )
    if not config.check_images:
        return folder
    observer.stage(f"checking {len(folder.train) + len(folder.valid):,} images")
    bad = _bad_images([p for p, _ in folder.train + folder.valid], ranks)
    if bad and not config.skip_bad_images:
        raise data.unreadable_images_error(bad, "Fix them or set `skip_bad_images`")
    if bad:
        folder = data.drop_bad_images(folder, bad)
        log.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0].path}")
    return folder


def _bad_images(paths: list[Path], ranks) -> list:
    """Every image decoded once, each rank its share on its share of the cores, and every rank told all.

    Split, not on rank 0 alone: the other ranks would wait in a collective under the process group's
    timeout (10 minutes with NCCL) while rank 0 decoded ImageNet.
    """
    from trdcli.data import folders as data
    from trdcli.run.distributed import gathered

    cores = max(1, (os.cpu_count() or 1) // ranks.local_world_size)
    found = gathered(data.find_bad_images(paths[ranks.rank :: ranks.world_size], workers=cores), ranks)
    order = {path: i for i, path in enumerate(paths)}
    return sorted((bad for share in found for bad in share), key=lambda bad: order[bad.path])


def top5(inp, targ):
    """Top-5 accuracy (a fastai metric: named for the history table)."""
    from fastai.metrics import top_k_accuracy

    return top_k_accuracy(inp, targ, k=5)


def _precision(config: TrainConfig, device) -> str:
    """The precision the run trains in on ``device`` (bf16, fp16 or fp32)."""
    from trdcli.run.precision import resolve_precision

    return resolve_precision(config.precision, device)


def _model_that_fits(config: TrainConfig, num_classes: int, device, ranks):
    """The freshly built model; a :class:`~trdcli.core.errors.ConfigError` if one step of it cannot fit in memory."""
    from trdcli.run.device import available_memory_bytes, device_name
    from trdcli.run.memory import check_step_fits, estimate_step_memory
    from trdcli.run.models import build_model

    model = build_model(config.arch, num_classes, full_px=config.size_px)
    batch = config.batch_size // ranks.world_size
    memory = estimate_step_memory(model, config.size_px, batch, mixed_precision=_precision(config, device) != "fp32")
    check_step_fits(memory, available_memory_bytes(device), device_name(device))
    return model


def _compile(config: TrainConfig, model, folder: ImageFolder, device, log: WarningLog):
    """``model`` compiled in place for the graphs the plan needs (a missing compiler stops here, in one line)."""
    from trdcli.run.compile import check_can_compile, compile_model, planned_graphs

    check_can_compile(config.compile_backend, device.type)
    pxs = _planned_pxs(config, max(len(folder.train), config.batch_size))
    record = compile_model(model, config.compile_backend, planned_graphs(pxs, config.size_px))
    if record.cache_size_limit > 8:
        log.note(f"compile: the plan needs {len(record.planned)} graphs ({', '.join(record.planned)}): "
                 f"torch's graph cache raised to {record.cache_size_limit} so none falls back to eager")  # fmt: skip
    return record


def _load_weights(config: TrainConfig, model, num_classes: int, log: WarningLog) -> None:
    from trdcli.run.models import load_weights

    if config.weights and (skipped := load_weights(model, config.weights, num_classes)):
        log.warn(f"the weights file: left out {len(skipped)} tensor(s) of another class count, e.g. {skipped[0]}")


def _check_model_takes_the_plan(config: TrainConfig, folder: ImageFolder) -> None:
    """Every size the schedule trains at, measured (FLOPs, on the meta device) before anything trains:
    a size the model cannot take (a ViT's reduced size that is no multiple of its patch) is one line
    naming the nearest sizes it takes, before a run directory exists; so is private BatchNorm on a
    model without BatchNorm."""
    from trdcli.core.cost import SizeNotTakenError
    from trdcli.core.defaults import check_bn_mode
    from trdcli.run.flops_cache import arch_flops, default_cache

    flops = arch_flops(config.arch, folder.num_classes, full_px=config.size_px, cache=default_cache())
    check_bn_mode(config.bn_mode, flops.at(config.size_px).has_batchnorm, config.arch)
    # At least one batch: fewer images than a batch is the memory check's and the loader's to say.
    for px in _planned_pxs(config, max(len(folder.train), config.batch_size)):
        try:
            flops.at(px)
        except SizeNotTakenError as exc:
            raise SizeNotTakenError(f"`arch` {config.arch}: {exc}") from exc


def _planned_pxs(config: TrainConfig, train_images: int) -> list[int]:
    """The sizes the run's schedule trains at over ``train_images`` images, largest first."""
    from trdcli.core.cost import RunShape, plan_groups

    shape = RunShape(train_images, config.batch_size, config.epochs, config.size_px)
    return sorted({g.px for g in plan_groups(config.schedule, shape)}, reverse=True)


def _build_dataloaders(config: TrainConfig, folder: ImageFolder, copies, device, ranks):
    """The run's fastai DataLoaders; ``copies``: (what reduced steps read, the copy's folder) from
    :func:`_prepared_copies`."""
    from trdcli.data.loaders import CropOptions, build_dataloaders, default_workers

    workers = default_workers(ranks.local_world_size) if config.workers is None else config.workers
    copies, prepared_dir = copies
    dls = build_dataloaders(
        folder,
        config.size_px,
        config.batch_size,
        workers=workers,
        device=device,
        crops=CropOptions(config.min_scale, draft=config.scheduled_loading, direct_crops=config.direct_crops),
        rank=ranks.rank,
        world_size=ranks.world_size,
        copies=copies,
    )
    dls.prepared_dir = prepared_dir  # what run.json says reduced steps read
    return dls


def _build_learner(config: TrainConfig, folder: ImageFolder, copies, model, device, log: WarningLog, ranks):
    """(Learner with trd_callbacks and the fit's other callbacks, the FLOPs table)."""
    import torch
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.metrics import accuracy

    from trdcli.callbacks.regularisation import StageRegularisation
    from trdcli.callbacks.trd import trd_callbacks
    from trdcli.run.callbacks import DataWaitTimer, RanksAgreeOnPlan, SeededPasses
    from trdcli.run.flops_cache import arch_flops, default_cache
    from trdcli.run.optim import loss_func, opt_func, recipe_callbacks
    from trdcli.run.precision import add_precision

    dls = _build_dataloaders(config, folder, copies, device, ranks)
    if ranks.distributed:
        # The loaders' shuffles are drawn alike on every rank (above); augmentation differs.
        torch.manual_seed(config.seed + ranks.rank)
    flops = arch_flops(config.arch, folder.num_classes, full_px=config.size_px, cache=default_cache())
    cbs = trd_callbacks(
        schedule=config.schedule,
        mode=config.resize_mode,
        flops=flops,
        bn=config.bn_mode,
        bn_recalibrate=config.bn_recalibrate,
        bn_recal_view=config.bn_recal_view,
        resize_in_loader=config.scheduled_loading,
        world_size=ranks.world_size,
        keep_records=False,  # counts only: memory that does not grow with the steps
    )
    cbs += [DataWaitTimer(), SeededPasses(config.seed, ranks.rank), RanksAgreeOnPlan(ranks)]
    if config.schedule.has_regularisation:
        cbs.append(StageRegularisation(config.schedule, config.seed))
    cbs += recipe_callbacks(config.recipe)
    if config.ema_decay is not None:
        from trdcli.callbacks.ema import EMAWeights

        cbs.append(EMAWeights(config.ema_decay))
    metrics = [accuracy] + ([top5] if folder.num_classes > 5 else [])
    learn = Learner(dls, model, loss_func=loss_func(config.recipe), opt_func=opt_func(config.recipe),
                    wd=config.recipe.wd, wd_bn_bias=config.recipe.wd_norm_bias, metrics=metrics, cbs=cbs)  # fmt: skip
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])  # the observer shows progress
    learn.logger = lambda *args: None
    if config.channels_last if config.channels_last is not None else device.type == "cuda":
        learn.to_channelslast(use_amp=False)
    add_precision(learn, _precision(config, device))
    if ranks.distributed:
        from trdcli.run.sharded_trainer import ShardedTrainer

        learn.add_cb(ShardedTrainer(device, unused_parameters=config.bn_mode == "private"))
    return learn, flops


def _prepared_copies(config: TrainConfig, folder: ImageFolder, log: WarningLog, ranks):
    """(What reduced steps read from a fresh ``trd prepare`` copy, per training image; its folder), or
    (None, None): the originals.

    The copy must be made for this run's largest reduced size and crops, from this folder, every file
    unchanged since (:func:`trdcli.data.prepare.stale_reason`): a stale one is never mixed with fresh
    images. Named with ``prepared``, anything else is an error; found beside the data, a warning.
    """
    from trdcli.data.prepare import find_copy, largest_reduced_px

    if not config.use_prepared:
        return None, None
    sources = [path for path, _ in folder.train]
    reduced_px = largest_reduced_px(config.schedule, len(sources), config.batch_size, config.epochs, config.size_px)
    found = find_copy(folder.root, sources, reduced_px, config.min_scale, config.prepared)
    if found.reason is not None:
        if config.prepared is not None:
            raise ConfigError(f"`prepared` {found.looked_in} cannot be used: {found.reason}")
        log.warn(
            f"the prepared copy in {found.looked_in} is not used ({found.reason}); reduced steps read the originals"
        )
    return found.copies, found.out_dir


def _feed_check_applies(device) -> bool:
    """On an accelerator the model can outrun the loader, most of all on reduced steps; on the CPU the
    two share the cores, and the data-wait figure after each epoch says what happened."""
    return device.type == "cuda"


def _check_feed(config: TrainConfig, folder: ImageFolder, copies, device, learn, log: WarningLog, ranks):
    """In the run's first seconds on CUDA (rank 0): the loader's rate per worker and the model's at each
    resolution the run uses, as `trd estimate-cost DATA --measure` times them, with a warning per
    resolution the run's workers cannot feed. Returns the check's figures for run.json, or None."""
    if not (_feed_check_applies(device) and ranks.is_main):
        return None
    from trdcli.run.feed import RUN_FEED_SAMPLE, feed_check, measure_loader, shortfall_warnings
    from trdcli.run.throughput import measure_throughput

    log.observer.stage("timing the loader and the model at each resolution (feed check)")
    pxs = _planned_pxs(config, len(folder.train))
    local_batch = config.batch_size // ranks.world_size
    try:  # advisory: a sample it cannot read (with `check_images` off) never stops a run that would go on
        loader = measure_loader(
            folder.train, config.size_px, pxs, config.min_scale, sample=RUN_FEED_SAMPLE, batch=min(local_batch, 32),
            copies=copies[0],
        )  # fmt: skip
    except DataError as exc:
        log.warn(f"the feed check was skipped: {exc}")
        return None
    import torch

    try:  # a second copy of the model beside the run's: where memory is tight, the check gives way
        model = measure_throughput(
            config.arch, folder.num_classes, pxs, local_batch, str(device), rounds=2, min_timing_s=0.2
        ).images_per_s
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        log.warn("the feed check was skipped: timing the model beside the run's ran out of device memory")
        return None
    workers = max(learn.dls.train.fake_l.num_workers, 1)  # 0: the training process loads, as one worker
    check = feed_check(loader, model, workers, copies[1])
    for line in shortfall_warnings(check):
        log.warn(line)
    return check.json()


def _start_point(learn, config: TrainConfig, progress, state, device) -> None:
    """Resume from the checkpoint, or run lr_find; sets ``state``'s starting epoch, history and rate."""
    from trdcli.core.cost import StepGroup
    from trdcli.run.rundir import load_checkpoint

    if config.resume:
        load_checkpoint(state.run_dir, learn, device)
        learn.compute_meter.resume_from([StepGroup(**g) for g in progress.step_groups])
        state.start_epoch = state.epochs_saved = progress.epochs_done
        state.history = progress.history
        state.wall_before_s = progress.wall_time_s
    elif config.lr_find:
        state.observer.stage("finding a learning rate (lr_find)")
        state.lr = float(learn.lr_find(show_plot=False).valley)


def _fit(learn, config: TrainConfig, state) -> None:
    """One-cycle (``fit_one_cycle``, or its curve with the tail's own annealing) with progress and
    checkpoints; Ctrl-C, SIGTERM, a diverged loss and images broken mid-run stop it with a message
    that says what is saved."""
    from trdcli.run.callbacks import (
        LossDiverged,
        ReportProgress,
        SaveCheckpoint,
        StopOnNonFiniteLoss,
        StopOnSigterm,
        lr_scheduler,
    )
    from trdcli.run.faults import sigterm_interrupts

    steps_per_epoch = len(learn.dls.train)
    state.observer.fit_started(steps_per_epoch * config.epochs, steps_per_epoch, config.epochs, state.start_epoch)
    cbs = [StopOnNonFiniteLoss(state.ranks, state.lr), ReportProgress(state), SaveCheckpoint(state)]
    state.start_clock()
    with sigterm_interrupts() as signals:
        try:
            cbs.append(StopOnSigterm(signals, state.ranks))
            if config.tail_lr_frac is None and config.recipe.lr_schedule == "one-cycle":
                learn.fit_one_cycle(config.epochs, state.lr, start_epoch=state.start_epoch, cbs=cbs)
            else:
                cbs.insert(0, lr_scheduler(config.lr_curve, state.lr))
                learn.fit(config.epochs, state.lr, start_epoch=state.start_epoch, cbs=cbs)
        except KeyboardInterrupt:
            raise _interrupted(state, signals) from None
        except LossDiverged as exc:
            saved = _saved_text(state, "add", " and a lower `lr` to continue from there")
            raise TrainingDiverged(f"{exc.where}; {saved}") from None
        except DataError as exc:  # an image became unreadable after the check (deleted, overwritten)
            if not state.epochs_saved:
                raise
            raise DataError(f"{one_line(exc)}; {_saved_text(state, 'fix it and add')}") from exc
        except RuntimeError:
            if signals:  # the same SIGTERM killed a DataLoader worker before it reached this process
                raise _interrupted(state, signals) from None
            raise
        finally:
            state.stop_clock()


def _interrupted(state, signals: list[int]) -> TrainingInterrupted:
    signal_name = "SIGTERM" if signals else "SIGINT"
    return TrainingInterrupted(state.run_dir, state.epochs_saved, state.epochs_saved > 0, signal_name)


def _saved_text(state, before: str, after: str = "") -> str:
    if not state.epochs_saved:
        return "no epoch had finished, so nothing is saved"
    return f"epochs 1-{state.epochs_saved} are saved: {before} `resume` {state.run_dir}{after}"


def _final_metrics(learn, state) -> dict[str, float]:
    """Top-1, top-5 and losses of the finished model."""
    from trdcli.run.distributed import average_batchnorm_statistics

    last = state.history[-1]
    if learn.recalibrate_bn.images:
        # Each rank re-estimated the statistics on its shard: their mean over the ranks, on every rank
        # and in model.pth, is that of every image the compute counts.
        average_batchnorm_statistics(learn.model, state.ranks)
        # BatchNorm was recalibrated when the fit ended, after the last epoch's validation: measure again.
        batches = learn.recalibrate_bn.batches_after_fit()
        state.observer.stage(f"validating with BatchNorm recalibrated on {batches} batches")
        valid_loss, *metric_values = learn.validate()
        last = {"valid_loss": valid_loss, **dict(zip([m.name for m in learn.metrics], metric_values, strict=True))}
    metrics = {"top1": float(last["accuracy"])}
    if "top5" in last:
        metrics["top5"] = float(last["top5"])
    metrics["train_loss"] = float(state.history[-1]["train_loss"])
    metrics["valid_loss"] = float(last["valid_loss"])
    if getattr(learn, "ema", None) is not None:
        metrics |= _ema_metrics(learn, state)
    return metrics


def _ema_metrics(learn, state) -> dict[str, float]:
    """The EMA of the weights validated as the model was: ``ema_top1`` (``ema_top5``), ``ema_valid_loss``."""
    from trdcli.run.distributed import average_batchnorm_statistics

    if learn.recalibrate_bn.images:
        average_batchnorm_statistics(learn.ema.model, state.ranks)
    state.observer.stage("validating the moving average of the weights (EMA)")
    model, learn.model = learn.model, learn.ema.model
    try:
        valid_loss, *metric_values = learn.validate()
    finally:
        learn.model = model
    named = dict(zip([m.name for m in learn.metrics], metric_values, strict=True))
    out = {"ema_top1": float(named["accuracy"]), "ema_valid_loss": float(valid_loss)}
    if "top5" in named:
        out["ema_top5"] = float(named["top5"])
    return out


def _finish(learn, config, folder, state, metrics, flops, device, feed=None) -> RunResult:
    from trdcli.core.data_wait import summarize
    from trdcli.run.compile import finish_record
    from trdcli.run.device import device_name, versions
    from trdcli.run.distributed import barrier, gathered
    from trdcli.run.rundir import save_run

    ranks = state.ranks
    _check_ranks_agree(learn.compute_meter, ranks)
    data_wait = summarize(state.history)
    _warn_if_loader_bound(data_wait, config, learn.dls.train.fake_l.num_workers, state.log)
    diverged = _ended_diverged(metrics["train_loss"], folder.num_classes, state.lr, state.log)

    from trdcli.core.cost import validation_flops

    # Every epoch validates, and once more after BatchNorm recalibration; under a launcher every rank
    # validates the whole set, so the run spends that times the ranks.
    valid_passes = config.epochs + (1 if learn.recalibrate_bn.images else 0)
    forward_flops = flops.at(config.size_px).forward_flops
    valid_flops = validation_flops(len(folder.valid), valid_passes, forward_flops, ranks.world_size)
    result = RunResult(
        config=config,
        classes=folder.classes,
        compute=replace(learn.compute_meter.summary(), valid_flops=valid_flops),
        metrics=metrics,
        history=state.history,
        **_checked_plan(learn, config),
        wall_time_s=state.fit_wall_time_s,
        run_dir=state.run_dir,
        device=device_name(device),
        versions=versions(),
        train_images=len(folder.train),
        valid_images=len(folder.valid),
        lr=state.lr,
        skipped_images=folder.skipped,
        ignored_files=folder.ignored_files,
        warnings=state.log.messages,
        notes=state.log.notes,
        diverged=diverged,
        data_wait=data_wait,
        prepared_dir=getattr(learn.dls, "prepared_dir", None),
        feed_check=feed,
        world_size=ranks.world_size,
        devices=gathered(device_name(device), ranks),
        precision=_precision(config, device),
        compile=finish_record(state.compile_record).json() if state.compile_record is not None else None,
    )
    if ranks.is_main:
        save_run(result, learn.model, learn.ema.model if getattr(learn, "ema", None) is not None else None)
    barrier(ranks)  # every rank returns once the run directory is complete
    return result


def _checked_plan(learn, config: TrainConfig) -> dict:
    """The run's steps by epoch and resolution (earlier processes' too), checked against the schedule's
    plan, which the loader was held to step by step; and the plan's profile over the run for the plot."""
    from trdcli.core.cost import RunShape, plan_groups, plan_profile

    schedule, steps_per_epoch = learn.trd.schedule, len(learn.dls.train)
    # The plan's shape in steps: a global batch of config.batch_size, steps_per_epoch of them an epoch.
    shape = RunShape(steps_per_epoch * config.batch_size, config.batch_size, config.epochs, config.size_px)
    planned = plan_groups(schedule, shape)
    ran = learn.compute_meter.groups()
    if sorted((g.epoch, g.px, g.steps) for g in ran) != [(g.epoch, g.px, g.steps) for g in planned]:
        raise RuntimeError("the steps the run counted are not the schedule's plan")
    return {"step_groups": ran, "profile_px": plan_profile(schedule, shape).tolist()}


def _check_ranks_agree(meter, ranks) -> None:
    """Every rank ran the same steps at the same resolutions, and together the images recorded.

    A disagreement is a bug in trd (the schedule and the sharding are meant to make it
    impossible), so it stops the run with its traceback rather than report wrong compute.
    """
    import numpy as np

    from trdcli.run.distributed import gathered, summed

    if not ranks.distributed:
        return
    # A digest of the steps this process ran, by fit, epoch and resolution: a few bytes to gather,
    # however long the run (the order within an epoch is the plan's, which the loader is held to).
    counted = [(g.fit, g.epoch, g.full_px, g.px, g.steps, g.images) for g in meter.groups_here()]
    steps = hashlib.sha256(np.asarray(counted, dtype=np.int64).tobytes()).hexdigest()
    if any(other != steps for other in gathered(steps, ranks)):
        raise RuntimeError("the ranks ran different steps or resolutions")
    # Each rank's own images: its batches, which it recorded times the world size.
    (seen,) = summed([meter.images_recorded_here() // meter.world_size], ranks)
    if seen != meter.images_recorded_here():
        raise RuntimeError(f"the ranks trained {seen} images, the record says {meter.images_recorded_here()}")


def _ended_diverged(train_loss: float, classes: int, peak_lr: float, log: WarningLog) -> str | None:
    """Why the run ended diverged (also a warning), or None. A short run the divergence watch cannot
    judge (it needs 20 steps) is still not a success: its result says so, and ``trd train`` exits 1
    as it does for a divergence caught mid-run."""
    import math

    from trdcli.core.divergence import FAR_ABOVE_CHANCE, ended_far_above_chance

    if not ended_far_above_chance(train_loss, classes):
        return None
    message = (
        f"the run diverged: its final training loss {train_loss:,.4g} is over {FAR_ABOVE_CHANCE:g}x chance "
        f"(ln {classes} = {math.log(classes):.2f}), so the model is no better than a guess; its peak `lr` was "
        f"{peak_lr:g}: train again with a lower one (a tenth of it, or `lr` find)"
    )
    log.warn(message)
    return message


def _warn_if_loader_bound(data_wait, config: TrainConfig, workers: int, log: WarningLog) -> None:
    if data_wait is None or data_wait.wait_frac <= config.max_data_wait_frac:
        return
    worst_px = max(data_wait.wait_s_by_px, key=data_wait.wait_frac_at)
    log.warn(
        f"the run is loader-bound: it waited for data {100 * data_wait.wait_frac:.0f}% of its training time "
        f"({100 * data_wait.wait_frac_at(worst_px):.0f}% of the time of its {worst_px} px steps); give it more "
        f"`workers` (it had {workers}), or move the images to a faster disk"
    )
