"""Does a reduced step save the time its FLOPs promise? Measured side by side, medians over repeats.

For each architecture and resolution, in one process and interleaved round by round (so a
slow moment of the machine hits every setting alike):
  - the model's training step (forward + backward + SGD) on a fixed random batch,
  - trd's antialiased resize of a full-resolution batch to that resolution,
  - and, with --data, the data loader's throughput (JPEG decode + crop) at full resolution.
It prints time per image, the ratio to full resolution, and the FLOPs ratio from the cost
model, so "time saved" and "compute saved" can be compared honestly.

    python benchmarks/resolution_speed.py --arch resnet18 --full 64 --low 32 48 --batch 32 --repeats 7
    python benchmarks/resolution_speed.py --arch resnet50 --full 224 --low 112 160 --batch 16 --repeats 5
    python benchmarks/resolution_speed.py --arch resnet18 --full 64 --low 32 --data ../shared/data/imagenette2-224
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from trdcli.core.resize import resize_batch
from trdcli.run.flops_cache import arch_flops
from trdcli.run.models import build_model


def time_call(fn, sync) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--full", type=int, default=64)
    parser.add_argument("--low", type=int, nargs="+", default=[32, 48])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--data", default=None, help="an image folder, to time the data loader too")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    model = build_model(args.arch, 1000).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    pxs = [args.full, *sorted(args.low, reverse=True)]
    full_batch = torch.randn(args.batch, 3, args.full, args.full, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    batches = {px: resize_batch(full_batch, px) for px in pxs}

    def train_steps(px):
        for _ in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(batches[px]), labels).backward()
            optimizer.step()

    for px in pxs:  # warm-up: allocator, kernel selection
        train_steps(px)
    sync()
    step_s = {px: [] for px in pxs}
    resize_s = {px: [] for px in pxs}
    for _ in range(args.repeats):
        for px in pxs:
            step_s[px].append(time_call(lambda px=px: train_steps(px), sync) / (args.steps * args.batch))
            resize_s[px].append(time_call(lambda px=px: resize_batch(full_batch, px), sync) / args.batch)

    flops = arch_flops(args.arch, 1000)
    full_step = statistics.median(step_s[args.full])
    print(f"# {args.arch}, batch {args.batch}, {args.repeats} repeats x {args.steps} steps, medians")
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}, "
        f"torch {torch.__version__}"
    )
    header = ("px", "ms/img step", "time vs full", "FLOPs vs full", "resize ms/img", "resize/step")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 12, 13, 14, 14, 12), strict=True)))
    for px in pxs:
        step = statistics.median(step_s[px])
        resize = statistics.median(resize_s[px])
        flop_ratio = flops.at(px).train_flops / flops.at(args.full).train_flops
        print(
            f"{px:>5} {1e3 * step:>12.2f} {step / full_step:>12.1%} {flop_ratio:>13.1%} "
            f"{1e3 * resize:>14.3f} {resize / step:>11.1%}"
        )

    if args.data:
        from trdcli.data.folders import scan_image_folder
        from trdcli.data.loaders import build_dataloaders

        folder = scan_image_folder(args.data)
        dls = build_dataloaders(folder, args.full, args.batch, workers=args.workers, device="cpu")
        rates = []
        iterator = iter(dls.train)
        next(iterator)
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                next(iterator)
            rates.append((time.perf_counter() - start) / (args.steps * args.batch))
        load = statistics.median(rates)
        print(
            f"data loader at {args.full} px, {args.workers} worker(s): {1e3 * load:.2f} ms/img "
            f"({load / full_step:.0%} of a full step, "
            f"{load / statistics.median(step_s[min(pxs)]):.0%} of a {min(pxs)} px step)"
        )


if __name__ == "__main__":
    main()
