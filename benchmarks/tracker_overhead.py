"""What does logging every step to a tracker cost a training step? Side by side, medians over repeats.

A fastai Learner (ResNet-18, random tensors at 64 px, batch 32, TRD's default at 32 px) fits one
epoch of STEPS steps without a tracker and with ``TRDTracker`` feeding each tracker named
(TensorBoard, W&B offline, MLflow on a local SQLite store), all interleaved round by round in
one process, the order turning every round (so a slow moment of the machine, or running last,
favours none). Prints the median time per step of each and its overhead in percent (the ratio
of the medians, and the median of each round's own ratio); then each tracker's own work alone:
blocks of 50 steps sent to it, per step.

    python benchmarks/tracker_overhead.py --steps 60 --repeats 10 --trackers tensorboard wandb mlflow
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed
from torch.utils.data import TensorDataset

from trdcli.callbacks.trd import TRDCallback
from trdcli.run.models import build_model
from trdcli.trackers.callback import TRDTracker
from trdcli.trackers.interface import TRACKERS, StepLog

NONE = "without tracker"


def make_tracker(name: str, run_dir: Path):
    tracker = importlib.import_module(TRACKERS[name]).tracker_for_run(run_dir, None, lambda line: None)
    tracker.start({"arch": "resnet18"})
    return tracker


def learner(steps: int, batch: int, px: int, tracker) -> Learner:
    from fastai.data.load import DataLoader

    set_seed(0)
    x, y = torch.randn(steps * batch, 3, px, px), torch.randint(0, 10, (steps * batch,))
    train = DataLoader(TensorDataset(x, y), bs=batch, shuffle=True, drop_last=True)
    valid = DataLoader(TensorDataset(x[:batch], y[:batch]), bs=batch)
    cbs = [TRDCallback(low_res=px // 2, bn_recalibrate=0)]
    if tracker is not None:
        cbs.append(TRDTracker(tracker, finish_after_fit=False))
    return Learner(DataLoaders(train, valid), build_model("resnet18", 10), loss_func=CrossEntropyLossFlat(), cbs=cbs)


def seconds_per_step(learn: Learner, steps: int) -> float:
    with learn.no_bar(), learn.no_logging():
        start = time.perf_counter()
        learn.fit(1, 1e-3)
        return (time.perf_counter() - start) / steps


def tracker_seconds_per_step(name: str, run_dir: Path, block: int = 50, repeats: int = 20) -> float:
    """The tracker's own work per step, alone: blocks of ``block`` steps sent to it."""
    tracker = make_tracker(name, run_dir)
    times = []
    for r in range(repeats):
        steps = [StepLog(r * block + i, 32, 32, 10**9, 10**12, 4 * 10**12, 1e-3, 2.3, 0.001) for i in range(block)]
        start = time.perf_counter()
        tracker.log_steps(steps)
        times.append((time.perf_counter() - start) / block)
    tracker.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trackers", nargs="+", default=["tensorboard"], choices=list(TRACKERS))
    parser.add_argument("--alone-only", action="store_true", help="only each tracker's own work, no training")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine
    os.environ.setdefault("WANDB_SILENT", "true")

    if args.alone_only:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.trackers:
                own_s = tracker_seconds_per_step(name, Path(tmp) / name)
                print(f"{name:<16} its own work alone {own_s * 1e6:6.0f} us per step (blocks of 50 steps)")
        return
    settings = [NONE, *args.trackers]
    times: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats + 1):  # round 0 warms up and is not counted
            turn = round_ % len(settings)
            for name in settings[turn:] + settings[:turn]:
                tracker = None if name == NONE else make_tracker(name, Path(tmp) / f"{name}-{round_}")
                spent = seconds_per_step(learner(args.steps, args.batch, args.px, tracker), args.steps)
                if tracker is not None:
                    tracker.close()
                if round_:
                    times[name].append(spent)
        alone = {name: tracker_seconds_per_step(name, Path(tmp) / f"{name}-alone") for name in args.trackers}
    print(f"resnet18, {args.px} px (TRD's default at {args.px // 2} px), batch {args.batch}, {args.steps} steps a fit, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    base = statistics.median(times[NONE])
    for name, values in times.items():
        line = f"{name:<16} {statistics.median(values) * 1000:7.1f} ms per step"
        if name != NONE:
            # Each round ran every setting back to back: a ratio within a round cancels the machine's slow moments.
            ratios = sorted(t / b - 1 for b, t in zip(times[NONE], values, strict=True))
            own_s = alone[name]
            line += (f"  overhead {(statistics.median(values) / base - 1) * 100:+6.2f}% (medians), per round "
                     f"{statistics.median(ratios) * 100:+6.2f}% [{ratios[0] * 100:+.1f}% .. {ratios[-1] * 100:+.1f}%]"
                     f"; its own work alone {own_s * 1e6:6.0f} us per step = {own_s / base * 100:.2f}%")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
