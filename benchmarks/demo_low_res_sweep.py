"""How deep can TRD reduce on the demo's shapes? Baseline and TRD at several low resolutions, one recipe.

Generates the shapes dataset (the earlier `trd demo` data) once, then trains ResNet-18 at 64 px with the demo's recipe
for each setting, in one process, and prints top-1, compute saved and wall time side by side.
Repeats over seeds give the spread.

    python benchmarks/demo_low_res_sweep.py                 # about 10 minutes on 2 CPU cores
    python benchmarks/demo_low_res_sweep.py --seeds 0 1 2 --epochs 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from trdcli.cli.demo import demo_config, make_shapes_dataset
from trdcli.core.schedules import ConstantSchedule, TRDSchedule
from trdcli.run.train import train

SETTINGS = {
    "baseline": lambda seed: ConstantSchedule(),
    "48 px, until 0.9": lambda seed: TRDSchedule(48, until=0.9, seed=seed),
    "40 px, until 0.9": lambda seed: TRDSchedule(40, until=0.9, seed=seed),
    "32 px, until 0.9": lambda seed: TRDSchedule(32, until=0.9, seed=seed),
    "32 px, until 0.9, prob 0.5": lambda seed: TRDSchedule(32, until=0.9, prob=0.5, seed=seed),
    "32 px, until 1.0, prob 0.9": lambda seed: TRDSchedule(32, until=1.0, prob=0.9, seed=seed),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=None, help="a subset of the settings, by name")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="trd-sweep-"))
    results: dict[str, list] = {name: [] for name in SETTINGS if not args.only or name in args.only}
    for seed in args.seeds:
        data = make_shapes_dataset(root / f"data-{seed}", seed=seed)
        base = demo_config(data, root / "runs", args.epochs, seed, size_px=64)
        for index, name in enumerate(results):
            config = replace(base, schedule=SETTINGS[name](seed), out_dir=root / "runs" / f"seed{seed}-{index}")
            run = train(config)
            results[name].append(run)
            print(
                f"seed {seed} {name:28} top-1 {run.metrics['top1']:6.1%}  saved {run.compute.compute_saved_frac:6.1%}"
                f"  wall {run.wall_time_s:6.1f} s",
                flush=True,
            )
    print(f"\n# ResNet-18, 64 px, {args.epochs} epochs, seeds {args.seeds}: median over seeds")
    print(f"{'setting':28} {'top-1':>7} {'compute saved':>14} {'wall s':>8}")
    for name, runs in results.items():
        top1 = statistics.median(r.metrics["top1"] for r in runs)
        saved = statistics.median(r.compute.compute_saved_frac for r in runs)
        wall = statistics.median(r.wall_time_s for r in runs)
        print(f"{name:28} {top1:>7.1%} {saved:>14.1%} {wall:>8.1f}")


if __name__ == "__main__":
    main()
