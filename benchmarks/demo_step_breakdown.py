"""Where a `trd demo` training step's time goes: forward + backward at each size, and the optimizer step.

The demo's model and batch (ResNet-18 from scratch, 4 classes, batch 32) at its full and reduced
sizes (96 and 48 px), on this machine's CPU: the median of interleaved repeats of forward+backward
and of fastai's Adam step (what `trd train` runs with trd's default recipe). The optimizer step costs
the same at every size, so it is what keeps a reduced step from costing a quarter of a full one here.

    python benchmarks/demo_step_breakdown.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fastai.optimizer import Adam

    from trdcli.cli.demo import DEMO_FULL_PX, DEMO_LOW_PX
    from trdcli.run.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    opt = Adam(list(model.parameters()), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    labels = torch.randint(0, 4, (args.batch,))
    times: dict[str, list[float]] = {f"forward+backward {px} px": [] for px in (DEMO_FULL_PX, DEMO_LOW_PX)}
    times["optimizer step (fastai Adam)"] = []
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for px in (DEMO_FULL_PX, DEMO_LOW_PX):
            images = torch.randn(args.batch, 3, px, px)
            start = time.perf_counter()
            loss_fn(model(images), labels).backward()
            times[f"forward+backward {px} px"].append(time.perf_counter() - start)
            start = time.perf_counter()
            opt.step()
            opt.zero_grad()
            times["optimizer step (fastai Adam)"].append(time.perf_counter() - start)
    medians = {name: statistics.median(values[1:]) * 1000 for name, values in times.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.repeats}")
    for name, ms in medians.items():
        print(f"{name:32s} {ms:8.1f} ms")
    full, low = (medians[f"forward+backward {px} px"] for px in (DEMO_FULL_PX, DEMO_LOW_PX))
    step = medians["optimizer step (fastai Adam)"]
    print(f"reduced over full, forward+backward: {low / full:.3f}; whole step with the optimizer: "
          f"{(low + step) / (full + step):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
