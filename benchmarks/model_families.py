"""What each family of model costs at a reduced size: training FLOPs per image at --low against --full,
the pixel ratio the paper's arithmetic assumes, and the compute share of a TRD run planned by trd's own
cost model (ImageNet's 1,281,167 images, 90 epochs, batch 256, 90% of the steps reduced, the window
reading until 0.9 as the paper runs it). Counted on the meta device: nothing trains, seconds per model.

    python benchmarks/model_families.py --full 224 --low 112
"""

from __future__ import annotations

import argparse

from trdcli.core.cost import RunShape, SizeNotTakenError, plan_compute
from trdcli.core.schedules import TRDSchedule
from trdcli.run.flops_cache import arch_flops

FAMILIES = [
    ("ResNet", "resnet18"),
    ("ResNet", "resnet50"),
    ("fastai xresnet", "xresnet50"),
    ("EfficientNet", "efficientnet_b0"),
    ("MobileNetV3", "mobilenet_v3_small"),
    ("RegNet", "regnet_x_400mf"),
    ("ConvNeXt", "timm/convnext_atto"),
    ("ConvNeXt", "convnext_tiny"),
    ("ViT", "timm/vit_tiny_patch16_224"),
    ("ViT", "timm/vit_base_patch16_224"),
    ("DeiT", "timm/deit_tiny_patch16_224"),
    ("Swin", "timm/swin_tiny_patch4_window7_224"),
    ("EfficientViT", "timm/efficientvit_b0"),
    ("MobileViT", "timm/mobilevit_xxs"),
    ("MLP-Mixer", "timm/mixer_s16_224"),
    ("CoAtNet", "timm/coatnet_nano_rw_224"),
]
IMAGENET_TRAIN_IMAGES = 1_281_167


def row(family: str, arch: str, full_px: int, low_px: int) -> str:
    flops = arch_flops(arch, 1000, full_px=full_px)
    full = flops.at(full_px)
    try:
        low = flops.at(low_px)
    except SizeNotTakenError as exc:
        # The refusal's advice, after the error it quotes: what trd train would print.
        advice = str(exc).rsplit("); ", 1)[-1].split(":")[0].replace("of it", f"of {low_px}")
        return f"| {family} | `{arch}` | {full.train_flops / 1e9:.2f} | - | - | - | refused: {advice} |"
    shape = RunShape(IMAGENET_TRAIN_IMAGES, 256, 90, full_px)
    plan = plan_compute(TRDSchedule(low_res=low_px, until=0.9), shape, flops.at)
    bn = "BatchNorm, recalibrated" if full.has_batchnorm else "no BatchNorm: nothing to recalibrate"
    return (
        f"| {family} | `{arch}` | {full.train_flops / 1e9:.2f} | {low.train_flops / 1e9:.2f} | "
        f"{low.train_flops / full.train_flops:.3f} | {plan.compute_fraction:.3f} | {bn} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", type=int, default=224)
    parser.add_argument("--low", type=int, default=112)
    args = parser.parse_args()
    ratio = (args.low / args.full) ** 2
    print(f"| family | arch | train GFLOPs/image at {args.full} | at {args.low} | ratio (pixels: {ratio:.3f}) "
          "| TRD run's compute share | normalisation |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|")
    for family, arch in FAMILIES:
        try:
            import timm  # noqa: F401
        except ImportError:
            if arch.startswith("timm/"):
                continue
        print(row(family, arch, args.full, args.low), flush=True)


if __name__ == "__main__":
    main()
