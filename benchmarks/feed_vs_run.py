"""Does the feed check predict the loader a real run gets? Its rate per worker against `trd train`'s own.

    python benchmarks/feed_vs_run.py DATA OUT_DIR --size 224 --low-res 112 [--epochs 2] [--repeats 3]

Round by round (so a slow moment of the machine hits both alike): the feed check
(:func:`trdcli.run.feed.measure_loader`, `trd estimate-cost DATA`'s measurement: one worker's images
per second at each resolution, on a sample of --sample images), then a real `trd train` of DATA with
`--workers 0` (ResNet-18, batch 32, TRD at --low-res with --prob of the steps reduced, 0.5 by default so
both sizes have many batches), whose loader runs in the
training process: each batch's wait is then the loader's whole work for it (decode, crop, resize,
collate, normalise), so images / data wait at each resolution (run.json's history) is one worker's
rate in the run. Prints both rates and their ratio per resolution (median over rounds); the target
(issue 29) is a ratio within 20% of 1. Writes OUT_DIR/feed_vs_run.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from trdcli.core.schedules import TRDSchedule
from trdcli.data.folders import scan_image_folder
from trdcli.run.config import TrainConfig
from trdcli.run.feed import measure_loader
from trdcli.run.train import train


def run_rates(run_dir: Path, batch: int) -> dict[int, float]:
    """Images per second of data wait at each resolution, over the run's epochs."""
    history = json.loads((run_dir / "run.json").read_text())["history"]
    rates = {}
    for px in {int(p) for row in history for p in row["steps_by_px"]}:
        images = sum(row["steps_by_px"].get(str(px), 0) for row in history) * batch
        wait = sum(row["data_wait_s_by_px"].get(str(px), 0.0) for row in history)
        rates[px] = images / wait
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--low-res", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--min-scale", type=float, default=0.35)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prob", type=float, default=0.5)
    args = parser.parse_args()
    folder = scan_image_folder(args.data)
    pxs = [args.size, args.low_res]
    rounds = []
    for r in range(args.repeats):
        feed = measure_loader(
            folder.train, args.size, pxs, args.min_scale, sample=args.sample, batch=args.batch_size
        ).images_per_s
        run_dir = args.out / f"run{r}"
        config = TrainConfig(
            data=args.data, arch="resnet18", epochs=args.epochs, size_px=args.size, batch_size=args.batch_size,
            schedule=TRDSchedule(args.low_res, until=1.0, prob=args.prob, seed=r), seed=r, workers=0, device="cpu",
            out_dir=run_dir, min_scale=args.min_scale, check_images=False, use_prepared=False,
        )  # fmt: skip
        train(config)
        rounds.append({"feed": feed, "run": run_rates(run_dir, args.batch_size)})
        missing = [px for px in pxs if px not in rounds[-1]["run"]]
        if missing:
            raise SystemExit(f"the run had no step at {missing} px: give it more epochs or images")
        print(f"round {r}: " + ", ".join(
            f"{px} px feed {rounds[-1]['feed'][px]:.0f} run {rounds[-1]['run'][px]:.0f} img/s" for px in pxs
        ), flush=True)  # fmt: skip
    print(f"\n{folder.root}: {len(folder.train)} training images; one worker's images/s, median of {args.repeats}")
    print(f"{'px':>5} {'feed check':>11} {'trd train':>10} {'ratio':>7}")
    summary = {}
    for px in pxs:
        feed = statistics.median(r["feed"][px] for r in rounds)
        run = statistics.median(r["run"][px] for r in rounds)
        ratios = [r["feed"][px] / r["run"][px] for r in rounds]
        summary[px] = {"feed": feed, "run": run, "ratio_median": statistics.median(ratios), "ratios": ratios}
        print(f"{px:>5} {feed:>11.0f} {run:>10.0f} {statistics.median(ratios):>7.2f}")
    (args.out / "feed_vs_run.json").write_text(json.dumps({"args": vars(args) | {"data": str(args.data), "out": str(
        args.out)}, "rounds": rounds, "summary": summary}, indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
