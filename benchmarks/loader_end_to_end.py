"""End to end: does TRD's wall time follow its FLOPs, with the real loader and the real model?

A fixed number of training steps (one pass over the images given) with trd's real data path
(``build_dataloaders``: worker processes, JPEG decode, random-resized crop, normalisation)
and a fastai Learner, in three settings interleaved round by round:

  baseline   every step at --full
  trd, old   TRD (--low, the given --until/--prob); the loader delivers --full and the
             callback resizes each reduced batch (trd before scheduled loading)
  trd, new   the same schedule; the loader delivers each step at its size (the full-size
             crop downsampled in the worker) and decodes JPEGs at reduced scale
  trd, direct  the same, reduced crops resampled straight to their size (--direct-crops)
  trd, copy  with --prepared COPY (a `trd prepare` copy of --data-root, which holds the folder):
             as "trd, new", reduced steps reading the copy

For each: the training time (validation skipped), the FLOPs from TRDCallback's record, the
wall-time speed-up over the baseline divided by the FLOPs speed-up (1.0: time follows
FLOPs exactly), and the share of the training time spent waiting for data. Medians over
--repeats.

    python benchmarks/loader_end_to_end.py /work/data/imagenet-sample --arch resnet50 --full 224 --low 112 \\
        --images 320 --batch 32 --repeats 3
    python benchmarks/loader_end_to_end.py /path/to/photos --device cuda --mixed-precision --channels-last ...
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from fastai.callback.core import Callback, CancelValidException
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from loader_speed import sample_images

from trdcli.callbacks.trd import TRDCallback
from trdcli.core.schedules import ConstantSchedule, TRDSchedule
from trdcli.data.folders import ImageFolder
from trdcli.data.loaders import CropOptions, build_dataloaders
from trdcli.run.callbacks import DataWaitTimer
from trdcli.run.models import build_model

SETTINGS = ("baseline", "trd, old", "trd, new", "trd, direct")


class SkipValidation(Callback):
    def before_validate(self):
        raise CancelValidException


@dataclass
class Timing:
    setting: str
    train_s: float
    wait_frac: float
    train_flops: int
    steps_by_px: dict[str, int]


def run_once(setting: str, folder: ImageFolder, args, device, copies=None) -> Timing:
    new = setting in ("trd, new", "trd, direct", "trd, copy")
    schedule = ConstantSchedule() if setting == "baseline" else TRDSchedule(args.low, args.until, args.prob, seed=0)
    direct = setting == "trd, direct"
    dls = build_dataloaders(
        folder, args.full, args.batch, workers=args.workers, device=device,
        crops=CropOptions(draft=new, direct_crops=direct), copies=copies if setting == "trd, copy" else None,
    )  # fmt: skip
    trd = TRDCallback(schedule=schedule, resize_in_loader=new, bn_recalibrate=0)
    torch.manual_seed(0)
    learn = Learner(dls, build_model(args.arch, folder.num_classes), loss_func=CrossEntropyLossFlat())
    learn.add_cbs([trd, DataWaitTimer(), SkipValidation()])
    if args.channels_last:
        learn.to_channelslast(use_amp=False)
    if args.mixed_precision:
        learn.to_fp16()
    with learn.no_logging(), learn.no_bar():
        learn.fit(1, 1e-3)
    phase = learn.data_wait_timer.last_phase
    summary = trd.summary()
    return Timing(
        setting,
        phase.train_s,
        phase.wait_frac,
        summary.train_flops,
        {str(px): n for px, n in summary.steps_by_px.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of images (searched recursively); labels are arbitrary")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--full", type=int, default=224)
    parser.add_argument("--low", type=int, default=112)
    parser.add_argument("--until", type=float, default=1.0)
    parser.add_argument("--prob", type=float, default=0.9)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: trd's default")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write every timing here")
    parser.add_argument("--prepared", type=Path, default=None, help="a trd prepare copy: adds the setting trd, copy")
    parser.add_argument("--data-root", type=Path, default=None, help="with --prepared: the folder it was made from")
    args = parser.parse_args()
    from trdcli.data.loaders import default_workers

    args.workers = default_workers() if args.workers is None else args.workers
    device = torch.device(args.device)
    paths = sample_images(args.folder, args.images, seed=0)
    items = [(path, i % 10) for i, path in enumerate(paths)]
    folder = ImageFolder(args.folder, [str(k) for k in range(10)], items, items[:10], "class-folders")

    settings, copies = SETTINGS, None
    if args.prepared is not None:
        from trdcli.data.prepare import copies_for

        copies = copies_for(args.data_root or args.folder, paths, args.prepared)
        settings = (*SETTINGS, "trd, copy")
    run_once("trd, new", folder, args, device)  # warm-up: imports, FLOPs cache, allocator
    timings = [run_once(s, folder, args, device, copies) for _ in range(args.repeats) for s in settings]
    print(f"# {args.arch}, {args.full} -> {args.low} px (until {args.until}, prob {args.prob}), {len(items)} images,"
          f" batch {args.batch}, {args.workers} worker(s), {args.repeats} repeats, medians")  # fmt: skip
    print(f"# {platform.machine()}, device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"mixed precision {args.mixed_precision}, channels_last {args.channels_last}")  # fmt: skip
    median = {s: statistics.median(t.train_s for t in timings if t.setting == s) for s in settings}
    flops = {s: next(t.train_flops for t in timings if t.setting == s) for s in settings}
    print(f"{'setting':<11} {'train s':>8} {'wall x':>7} {'FLOPs x':>8} {'wall/FLOPs':>10} {'data wait':>9}  steps")
    summary = {}
    for s in settings:
        wall_x, flops_x = median["baseline"] / median[s], flops["baseline"] / flops[s]
        wait = statistics.median(t.wait_frac for t in timings if t.setting == s)
        steps = next(t.steps_by_px for t in timings if t.setting == s)
        ratio = wall_x / flops_x
        print(f"{s:<11} {median[s]:>8.1f} {wall_x:>6.2f}x {flops_x:>7.2f}x {ratio:>10.2f} {100 * wait:>8.1f}%  {steps}")
        summary[s] = {"train_s_median": median[s], "wall_speedup": wall_x, "flops_speedup": flops_x,
                      "wall_over_flops": ratio, "data_wait_frac_median": wait, "steps_by_px": steps}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"folder": str(args.folder), "json": None},
                                         "timings": [asdict(t) for t in timings], "summary": summary},
                                        default=str))  # fmt: skip


if __name__ == "__main__":
    main()
