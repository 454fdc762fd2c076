"""What does logging every step to TensorBoard cost a training step? Side by side, medians over repeats.

A fastai Learner (ResNet-18, random tensors at 64 px, batch 32, TRD's default at 32 px) fits one
epoch of STEPS steps with and without ``TRDTracker(TensorBoardTracker(...))``, the two
interleaved round by round in one process, the order flipping every round (so a slow moment
of the machine, or running second, favours neither).
Prints the median time per step of each and the overhead of the tracker, in percent: the ratio
of the medians, and the median of each round's own ratio.

    python benchmarks/tracker_overhead.py --steps 40 --repeats 5
"""

from __future__ import annotations

import argparse
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
from trdcli.run.tensorboard_tracker import TensorBoardTracker
from trdcli.run.tracking import TRDTracker


def learner(steps: int, batch: int, px: int, tracked_dir: Path | None) -> Learner:
    from fastai.data.load import DataLoader

    set_seed(0)
    x, y = torch.randn(steps * batch, 3, px, px), torch.randint(0, 10, (steps * batch,))
    train = DataLoader(TensorDataset(x, y), bs=batch, shuffle=True, drop_last=True)
    valid = DataLoader(TensorDataset(x[:batch], y[:batch]), bs=batch)
    cbs = [TRDCallback(low_res=px // 2, bn_recalibrate=0)]
    if tracked_dir is not None:
        cbs.append(TRDTracker(TensorBoardTracker(tracked_dir), finish_after_fit=False))
    return Learner(DataLoaders(train, valid), build_model("resnet18", 10), loss_func=CrossEntropyLossFlat(), cbs=cbs)


def seconds_per_step(learn: Learner, steps: int) -> float:
    with learn.no_bar(), learn.no_logging():
        start = time.perf_counter()
        learn.fit(1, 1e-3)
        return (time.perf_counter() - start) / steps


def tracker_seconds_per_step(log_dir: Path, block: int = 50, repeats: int = 20) -> float:
    """The tracker's own work per step, alone: blocks of ``block`` steps written to TensorBoard."""
    from trdcli.run.trackers import StepLog

    tracker = TensorBoardTracker(log_dir)
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
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    times: dict[str, list[float]] = {"without tracker": [], "with TensorBoard": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats + 1):  # round 0 warms up and is not counted
            # ABBA: the order flips every round, so neither setting always runs second (warmer).
            for name in list(times) if round_ % 2 else list(times)[::-1]:
                tracked = Path(tmp) / f"r{round_}" if name == "with TensorBoard" else None
                learn = learner(args.steps, args.batch, args.px, tracked)
                spent = seconds_per_step(learn, args.steps)
                if tracked is not None:
                    learn.trd_tracker.close()
                if round_:
                    times[name].append(spent)
    print(f"resnet18, {args.px} px (TRD's default at {args.px // 2} px), batch {args.batch}, {args.steps} steps a fit, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    for name, values in times.items():
        print(f"{name:<18} {statistics.median(values) * 1000:8.1f} ms per step  (all: "
              + ", ".join(f"{v * 1000:.1f}" for v in values) + ")")  # fmt: skip
    base, tracked = (statistics.median(v) for v in times.values())
    print(f"overhead of the tracker: {(tracked / base - 1) * 100:+.2f}% of a step (ratio of the medians)")
    # Each round ran both back to back: the ratio within a round cancels the machine's slow moments.
    ratios = sorted(t / b - 1 for b, t in zip(*times.values(), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        alone_s = tracker_seconds_per_step(Path(tmp))
    print(f"the tracker's own work, alone: {alone_s * 1e6:.0f} us per step = "
          f"{alone_s / base * 100:.2f}% of the median step without it")  # fmt: skip
    print(f"per round: median {statistics.median(ratios) * 100:+.2f}%, range {ratios[0] * 100:+.2f}% .. "
          f"{ratios[-1] * 100:+.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()
