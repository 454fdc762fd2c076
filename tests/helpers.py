"""Helpers shared by the tests: tiny models, fastai DataLoaders over tensors, generated image folders."""

from __future__ import annotations

from pathlib import Path

from trdcli.run.observer import TrainObserver

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette2-224"


def tiny_cnn(num_classes: int = 3):
    """A small convnet that accepts any input size (global pooling), like the real ones."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def tensor_dls(n_train: int = 48, n_valid: int = 16, px: int = 64, bs: int = 8, num_classes: int = 3, seed: int = 0):
    """fastai DataLoaders over random image tensors: fast, for tests of the training loop itself."""
    import torch
    from fastai.data.core import DataLoaders

    gen = torch.Generator().manual_seed(seed)

    def make(n):
        images = torch.randn(n, 3, px, px, generator=gen)
        labels = torch.randint(0, num_classes, (n,), generator=gen)
        return list(zip(images, labels, strict=True))

    return DataLoaders.from_dsets(make(n_train), make(n_valid), bs=bs, shuffle=True, drop_last=True, device="cpu")


def make_image_folder(root: Path, classes=("circle", "square", "triangle"), n_train=6, n_valid=3, px=48, seed=0):
    """An ImageNet-layout folder of small generated PNGs: root/train/<class>/*.png, root/val/<class>/*.png."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_valid)):
        for k, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8))
                draw = ImageDraw.Draw(img)
                lo, hi = px // 4, 3 * px // 4
                if k % 3 == 0:
                    draw.ellipse((lo, lo, hi, hi), fill=(255, 255, 255))
                elif k % 3 == 1:
                    draw.rectangle((lo, lo, hi, hi), fill=(0, 0, 0))
                else:
                    draw.polygon([(px // 2, lo), (lo, hi), (hi, hi)], fill=(255, 0, 0))
                img.save(folder / f"{cls}_{i}.png")
    return root


def photo_like(width: int, height: int, seed: int = 0):
    """An RGB image with a photo's spectrum: smooth shading, object edges and fine grain, not white noise."""
    from trdcli.data.photos import photo_like as generate

    return generate(width, height, seed)


def make_jpeg_folder(root: Path, classes=("a", "b", "c"), n_train=8, n_valid=2, sizes=((160, 120), (120, 160)), seed=0):
    """An ImageNet-layout folder of photo-like JPEGs of the given (width, height) sizes, in turn."""
    count = 0
    for split, n in (("train", n_train), ("val", n_valid)):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                width, height = sizes[count % len(sizes)]
                photo_like(width, height, seed + count).save(folder / f"{cls}_{i}.jpg", quality=90)
                count += 1
    return root


class InterruptAfter(TrainObserver):
    """A TrainObserver that presses Ctrl-C after step ``step``: an interrupted run, for resume tests."""

    def __init__(self, step):
        self.step = step

    def step_done(self, step, epoch, px, loss, images_per_s):
        if step == self.step:
            raise KeyboardInterrupt


def epoch_counts(step_px, steps_per_epoch: int) -> list[tuple[int, int, int]]:
    """(epoch, px, steps) of a per-step list of resolutions, counted here by hand: what a run's step
    groups must hold when it ran that plan."""
    from collections import Counter

    counted = Counter((t // steps_per_epoch, int(px)) for t, px in enumerate(step_px))
    return sorted((epoch, px, n) for (epoch, px), n in counted.items())


def ran(result) -> list[tuple[int, int, int]]:
    """(epoch, px, steps) of what a finished run (a RunResult) counted."""
    return sorted((g.epoch, g.px, g.steps) for g in result.step_groups)
