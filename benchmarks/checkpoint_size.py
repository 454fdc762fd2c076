"""How big is a checkpoint's progress file, and how long does writing it take, at ImageNet's length?

No training: a 90-epoch ImageNet run at batch 256 (5,004 steps per epoch, 450,360 steps) under
trd's default schedule is simulated step by step through the same ``StepCounter`` that
``TRDCallback`` counts with, and the progress file a checkpoint writes after the last epoch is
serialised and written as ``save_checkpoint`` writes it (``atomic_write_text``). Beside it, the
format before step groups (one ``StepRecord`` per step). Medians over repeats, one process.

    python benchmarks/checkpoint_size.py --repeats 5 --epochs 90   (and --epochs 9)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from trdcli.core.cost import StepCounter, StepRecord
from trdcli.core.schedules import TRDSchedule
from trdcli.run.fileio import atomic_write_text
from trdcli.run.rundir import Progress

STEPS_PER_EPOCH, BATCH, FULL_PX = 5004, 256, 224


def simulated_records(epochs: int) -> list[StepRecord]:
    total = epochs * STEPS_PER_EPOCH
    plan = TRDSchedule(112).plan_px(total, FULL_PX, STEPS_PER_EPOCH)
    # The FLOPs field is a placeholder of the right magnitude: the size, not the value, matters here.
    return [
        StepRecord(0, step // STEPS_PER_EPOCH, step, total, int(px), FULL_PX, BATCH, BATCH * 6_400_000_000)
        for step, px in enumerate(plan)
    ]


def time_write(text: str, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "progress.json"
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            atomic_write_text(path, text)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=90)
    args = parser.parse_args()
    EPOCHS = args.epochs  # noqa: N806 - the simulated run's length, named as the docstring names it

    records = simulated_records(EPOCHS)
    counter = StepCounter()
    for record in records:
        counter.add(record)
    progress = asdict(Progress(epochs_done=EPOCHS))
    without_groups = {k: v for k, v in progress.items() if k != "step_groups"}
    formats = {
        "step groups (now)": {**progress, "step_groups": [asdict(g) for g in counter.groups()]},
        "one record per step (before)": {**without_groups, "records": [asdict(r) for r in records]},
    }
    print(f"simulated: {EPOCHS} epochs x {STEPS_PER_EPOCH:,} steps = {len(records):,} steps, trd's default schedule")
    print(f"{'format':<30} {'entries':>9} {'bytes':>13} {'serialise + write (median)':>28}")
    for name, payload in formats.items():
        entries = len(payload.get("step_groups") or payload.get("records"))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            text = json.dumps(payload)
            times.append(time.perf_counter() - start)
        write_s = statistics.median(times) + time_write(text, args.repeats)
        print(f"{name:<30} {entries:>9,} {len(text.encode()):>13,} {write_s * 1000:>25.1f} ms")


if __name__ == "__main__":
    main()
