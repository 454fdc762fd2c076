"""`trd demo`: a synthetic shapes dataset where shape, not texture, carries the label; baseline vs TRD.

Every image is a shape (circle, square, triangle, cross) filled with one random texture on a
background of another (stripes, checks, dots or noise, in random colours). Texture is noise
with respect to the label, which is the situation TRD is designed for: reduced steps keep the
shape and lose the texture.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trdcli.config import TrainConfig
from trdcli.observer import TrainObserver
from trdcli.results import RunResult

SHAPES = ("circle", "square", "triangle", "cross")
IMAGE_PX = 72  # generated size; training crops 64 px from it


def _texture(rng: np.random.Generator, px: int, light: bool) -> np.ndarray:
    """A (px, px, 3) uint8 texture: stripes, checks, dots or noise in two random colours.

    ``light`` picks colours from the bright or the dark half, so a shape always stands out
    from its background by brightness while its texture and hue say nothing about its class.
    """
    low, high = (128, 256) if light else (0, 128)
    a, b = rng.integers(low, high, 3), rng.integers(low, high, 3)
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float64)
    kind = rng.integers(4)
    period = rng.uniform(3, 9)
    if kind == 0:  # stripes at a random angle
        angle = rng.uniform(0, math.pi)
        mask = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
    elif kind == 1:  # checks
        mask = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
    elif kind == 2:  # dots
        mask = (np.sin(xx * 2 * math.pi / period) * np.sin(yy * 2 * math.pi / period)) > 0.5
    else:  # noise
        mask = rng.random((px, px)) > 0.5
    return np.where(mask[..., None], a, b).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, shape: str, px: int):
    from PIL import Image, ImageDraw

    mask = Image.new("L", (px, px), 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.25, 0.38) * px
    cx, cy = px / 2 + rng.uniform(-0.08, 0.08) * px, px / 2 + rng.uniform(-0.08, 0.08) * px
    turn = rng.uniform(0, 2 * math.pi)

    def polygon(points):
        rotated = [
            (cx + x * math.cos(turn) - y * math.sin(turn), cy + x * math.sin(turn) + y * math.cos(turn))
            for x, y in points
        ]
        draw.polygon(rotated, fill=255)

    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    elif shape == "square":
        s = radius * 0.85
        polygon([(-s, -s), (s, -s), (s, s), (-s, s)])
    elif shape == "triangle":
        polygon([(radius * math.cos(a), radius * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    else:
        w, r = radius * 0.35, radius
        polygon(
            [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        )
    return np.asarray(mask) > 127


def make_shapes_dataset(root: Path, n_train: int = 120, n_valid: int = 40, seed: int = 0) -> Path:
    """Write ``root/train/<shape>/*.png`` and ``root/val/<shape>/*.png``; deterministic for a seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_valid)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                light_shape = bool(rng.integers(2))
                foreground, background = _texture(rng, IMAGE_PX, light_shape), _texture(rng, IMAGE_PX, not light_shape)
                mask = _shape_mask(rng, shape, IMAGE_PX)
                image = np.where(mask[..., None], foreground, background)
                Image.fromarray(image).save(folder / f"{shape}_{i:04d}.png")
    return root


@dataclass
class DemoComparison:
    data_dir: Path
    train_images: int
    valid_images: int
    baseline: RunResult
    trd: RunResult


def demo_config(data_dir: Path, runs_dir: Path, epochs: int, seed: int) -> TrainConfig:
    """The demo's recipe: ResNet-18 at 64 px, from scratch, on the CPU."""
    from trdcli.schedules import ConstantSchedule

    return TrainConfig(
        data=data_dir,
        arch="resnet18",
        epochs=epochs,
        size_px=64,
        batch_size=32,
        lr=3e-3,
        schedule=ConstantSchedule(),
        seed=seed,
        out_dir=runs_dir / "baseline",
        min_scale=0.6,  # crops keep most of the shape, which is what carries the label
        device="cpu",
    )


# 48 of 64 px, not 32: at 32 px ResNet-18's last stage is 1x1, and on this dataset a network
# trained there for 90% of its steps stays near chance at 64 px (docs/benchmarks.md).
DEMO_LOW_PX = 48


def run_demo(
    out: Path | None = None,
    epochs: int = 8,
    seed: int = 0,
    observer: TrainObserver | None = None,
    low_res: int = DEMO_LOW_PX,
    until: float = 0.9,
    prob: float = 1.0,
) -> DemoComparison:
    """Generate the dataset under ``out`` (a new temporary folder if None), train baseline and TRD."""
    from trdcli.schedules import TRDSchedule
    from trdcli.train import train

    trd_schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed)
    trd_schedule.validate(64)
    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="trd-demo-"))
    observer = observer or TrainObserver()
    observer.stage(f"generating shapes in {root / 'data'}")
    data_dir = make_shapes_dataset(root / "data", seed=seed)
    base_config = demo_config(data_dir, root / "runs", epochs, seed)
    runs = {}
    for label, schedule in (("baseline", base_config.schedule), ("trd", trd_schedule)):
        observer.run_label(label)
        config = replace(base_config, schedule=schedule, out_dir=root / "runs" / label)
        runs[label] = train(config, observer)
    observer.run_label("")
    return DemoComparison(
        data_dir, runs["baseline"].train_images, runs["baseline"].valid_images, runs["baseline"], runs["trd"]
    )
