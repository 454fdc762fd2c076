"""Compare every preset's compute for your own run, from Python.

python examples/compare_presets.py --arch resnet50 --images 1281167 --epochs 90 --batch-size 256 --size 224
"""

from __future__ import annotations

import argparse

from trdcli import PRESETS, RunShape, arch_flops, get_preset, plan_compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--images", type=int, default=1_281_167)
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()

    flops = arch_flops(args.arch, args.classes)
    shape = RunShape(args.images, args.batch_size, args.epochs, args.size)
    print(f"{'preset':16} {'compute':>8}  steps by px")
    for name in PRESETS:
        summary = plan_compute(get_preset(name), shape, flops.at)
        steps = ", ".join(f"{px}: {n:,}" for px, n in summary.steps_by_px.items() if n)
        print(f"{name:16} {summary.compute_fraction:>8.1%}  {steps}")


if __name__ == "__main__":
    main()
