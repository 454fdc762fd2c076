"""The model's training step at each size, in each precision, eager and compiled: what bf16, fp16 and
torch.compile buy a TRD run, side by side in one process, medians over rounds interleaved by setting.

    python benchmarks/precision_compile_speed.py --arch resnet50 --full 224 --low 112 --batch 256 \
        --precisions fp16 bf16 --json OUT.json

For each precision and compile setting: images per second of a training step (forward, backward, SGD
with momentum) on a fixed batch at the full and the reduced size, the compile time apart (the first
steps at each size, less the steady step time), the reduced step's speed-up against its FLOPs
speed-up, and which configuration is fastest. Compiled with ``dynamic=False``, as ``trd train
--compile`` compiles: one graph per size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from trdcli.run.flops_cache import arch_flops
from trdcli.run.models import build_model

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _step_fn(model, opt, scaler, device, dtype):
    def step(images, labels):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args, precision: str, compiled: bool, device) -> dict:
    torch.manual_seed(0)
    model = build_model(args.arch, 1000, full_px=args.full).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        model.compile(dynamic=False, backend=args.compile_backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    step = _step_fn(model, opt, scaler, device, DTYPES[precision])
    batches = {
        px: (torch.randn(args.batch, 3, px, px, device=device), torch.randint(0, 1000, (args.batch,), device=device))
        for px in (args.full, args.low)
    }
    first_s = {}
    for px, (images, labels) in batches.items():  # the first steps compile (when compiled) and warm up
        start = time.perf_counter()
        for _ in range(2):
            step(images, labels)
        _sync(device)
        first_s[px] = time.perf_counter() - start
    times = {px: [] for px in batches}
    for _ in range(args.repeats):
        for px, (images, labels) in batches.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(images, labels)
            _sync(device)
            times[px].append((time.perf_counter() - start) / args.steps)
    step_s = {px: statistics.median(t) for px, t in times.items()}
    return {
        "precision": precision,
        "compiled": compiled,
        "images_per_s": {str(px): args.batch / s for px, s in step_s.items()},
        # What the first two steps took beyond two steady ones: compiling (and warming up) at that size.
        "compile_s": {str(px): max(0.0, first_s[px] - 2 * step_s[px]) for px in batches} if compiled else None,
        "low_speedup": step_s[args.full] / step_s[args.low],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--full", type=int, default=224)
    parser.add_argument("--low", type=int, default=112)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=["fp16", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    flops = arch_flops(args.arch, 1000, full_px=args.full)
    flops_speedup = flops.at(args.full).train_flops / flops.at(args.low).train_flops
    rows = [measure(args, p, c, device) for p in args.precisions for c in (False, True)]
    fastest = max(rows, key=lambda r: r["images_per_s"][str(args.full)])
    fastest = {k: fastest[k] for k in ("precision", "compiled", "low_speedup")} | {
        "low_speedup_over_flops": fastest["low_speedup"] / flops_speedup
    }
    result = {
        "arch": args.arch, "full_px": args.full, "low_px": args.low, "batch": args.batch, "device": args.device,
        "compile_backend": args.compile_backend, "flops_speedup": flops_speedup, "rows": rows, "fastest": fastest,
    }  # fmt: skip
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    for row in rows:
        rates = ", ".join(f"{px} px {rate:.0f}/s" for px, rate in row["images_per_s"].items())
        compile_s = f", compile {sum(row['compile_s'].values()):.1f} s" if row["compiled"] else ""
        name = f"{row['precision']}{' compiled' if row['compiled'] else ''}"
        print(f"{name:<14} {rates}; reduced step {row['low_speedup']:.2f}x (FLOPs {flops_speedup:.2f}x){compile_s}")


if __name__ == "__main__":
    main()
