"""The fastai notebook API: any Learner, plus trd_callbacks, on an image folder.

python examples/notebook_api.py ../shared/data/imagenette2-224 --size 64 --low-res 32 --epochs 1
"""

from __future__ import annotations

import argparse

from fastai.vision.all import (
    ImageDataLoaders,
    Normalize,
    RandomResizedCrop,
    accuracy,
    imagenet_stats,
    resnet18,
    vision_learner,
)

from trdcli import trd_callbacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="an image folder with train/ and val/")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--low-res", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bs", type=int, default=32)
    args = parser.parse_args()

    dls = ImageDataLoaders.from_folder(
        args.data,
        train="train",
        valid="val",
        item_tfms=RandomResizedCrop(args.size, min_scale=0.35),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
        bs=args.bs,
        num_workers=0,
    )
    # trd's default recipe: 90% of the steps at low_res, at random, and BatchNorm recalibrated at the end.
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy, cbs=trd_callbacks(low_res=args.low_res))
    with learn.no_bar():
        learn.fit_one_cycle(args.epochs)
    summary = learn.compute_meter.summary()
    print("steps per resolution:", summary.steps_by_px)
    print(f"training FLOPs: {summary.train_flops:.3e} (baseline {summary.baseline_train_flops:.3e})")
    print(f"compute saved: {summary.compute_saved_frac:.1%}")
    print(f"BatchNorm recalibrated on {learn.recalibrate_bn.images} images")
    print(f"top-1 after recalibration: {learn.validate()[1]:.1%}")


if __name__ == "__main__":
    main()
