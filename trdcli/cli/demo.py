"""`trd demo`: generated shapes where texture is a shortcut in training and useless after; baseline vs TRD.

Two generated datasets, both of four shapes (circle, square, triangle, cross):

- :func:`make_texture_shortcut_dataset`, the demo's: each class has its own fine texture
  (strong stripes 3 px apart, one direction per class) that fills its shape in 90% of the
  training images; the shape itself differs from the flat background by a weaker step of
  brightness. In validation the texture is drawn independently of the class, and a
  cue-conflict split gives every shape another class's texture. The stripes are fine enough
  that halving the resolution erases them, so reduced steps can only learn the shape: the
  mechanism TRD claims, made visible. Built to show it, so it flatters TRD; real-data results
  are in docs/method.md.
- :func:`make_shapes_dataset`: random coarse textures that say nothing of the class (the
  accuracy benchmark's data, benchmarks/accuracy_demo.sh).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trdcli.evaluate.cue_conflict import ShapeBias
from trdcli.run.config import TrainConfig
from trdcli.run.observer import TrainObserver
from trdcli.run.results import RunResult

SHAPES = ("circle", "square", "triangle", "cross")
IMAGE_PX = 72  # make_shapes_dataset's generated size; training crops 64 px from it
SHORTCUT_IMAGE_PX = 104  # make_texture_shortcut_dataset's; the demo crops 96 px from it
# Stripes repeat every 3 px along x, y, or both (diagonals): an exact 3-pixel pattern on the
# pixel grid, with no slower beat in it. About 2.8 px at the demo's 96 px (visible); at 48 px
# beyond Nyquist, so the antialiased reduction keeps under 20% of their contrast (tested).
STRIPE_PERIOD_PX = 3
STRIPE_CONTRAST = 90.0  # grey levels between the stripes' two colours
SHAPE_CONTRAST = 50.0  # grey levels between a shape's mean colour and the background
# The class texture: the direction the stripes vary along, one per shape.
CLASS_STRIPES = dict(zip(SHAPES, ((1, 0), (0, 1), (1, 1), (1, -1)), strict=True))


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


def _stripes(rng: np.random.Generator, px: int, direction: tuple[int, int], mean: np.ndarray) -> np.ndarray:
    """Fine stripes varying along ``direction`` (x, y), strong in contrast, averaging to ``mean``.

    One pixel in three is ``mean + 2k``, the others ``mean - k``: blurred (as a reduction
    does), the stripes become the flat ``mean``.
    """
    k = STRIPE_CONTRAST / 3
    yy, xx = np.mgrid[0:px, 0:px]
    # One pixel of each period of 3 in the bright colour, the period shifted at random.
    bright = (xx * direction[0] + yy * direction[1] + rng.integers(STRIPE_PERIOD_PX)) % STRIPE_PERIOD_PX == 0
    return np.where(bright[..., None], mean + 2 * k, mean - k)


def _shortcut_image(rng: np.random.Generator, shape: str, texture_class: str) -> np.ndarray:
    """A shape filled with fine stripes, a little brighter or darker than a flat background.

    The outline's contrast is weak (SHAPE_CONTRAST), the stripes' strong (STRIPE_CONTRAST): at
    full resolution the stripes are the easier cue; at half resolution they blur away and only
    the outline is left.
    """
    px = SHORTCUT_IMAGE_PX
    background = rng.uniform(70, 185, 3)
    fill_mean = background + SHAPE_CONTRAST * (1 if rng.integers(2) else -1)
    fill = _stripes(rng, px, CLASS_STRIPES[texture_class], fill_mean)
    image = np.where(_shape_mask(rng, shape, px)[..., None], fill, background)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_texture_shortcut_dataset(
    root: Path, n_train: int = 120, n_valid: int = 40, n_conflict: int = 24, agreement: float = 0.9, seed: int = 0
) -> Path:
    """``root/train``, ``root/val`` (ImageNet layout) and ``root/conflict/<shape>/<shape>N-<texture>M.png``.

    In training, a shape wears its class's texture with probability ``agreement`` (else another
    class's); in validation the texture is uniform over the classes; in the conflict split it is
    always another class's. Deterministic for a seed.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_valid), ("conflict", n_conflict)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            others = [s for s in SHAPES if s != shape]
            for i in range(n):
                if split == "train":
                    texture = shape if rng.random() < agreement else others[rng.integers(len(others))]
                elif split == "val":
                    texture = SHAPES[rng.integers(len(SHAPES))]
                else:
                    texture = others[i % len(others)]
                name = f"{shape}{i + 1}-{texture}{i + 1}.png" if split == "conflict" else f"{shape}_{i:04d}.png"
                Image.fromarray(_shortcut_image(rng, shape, texture)).save(folder / name)
    return root


@dataclass
class DemoComparison:
    data_dir: Path
    train_images: int
    valid_images: int
    baseline: RunResult
    trd: RunResult
    baseline_shape_bias: ShapeBias
    trd_shape_bias: ShapeBias


DEMO_FULL_PX = 96
DEMO_LOW_PX = 48  # half: the reduced steps cannot see the 3 px stripes (about 1.4 px at 48)
DEMO_IMAGES_PER_CLASS = (120, 40, 24)  # training, validation and cue-conflict images of each shape


def demo_config(data_dir: Path, runs_dir: Path, epochs: int, seed: int, size_px: int = DEMO_FULL_PX) -> TrainConfig:
    """The demo's recipe: ResNet-18 from scratch, batch 32, on the CPU."""
    from trdcli.core.schedules import ConstantSchedule

    return TrainConfig(
        data=data_dir,
        arch="resnet18",
        epochs=epochs,
        size_px=size_px,
        batch_size=32,
        lr=3e-3,
        schedule=ConstantSchedule(),
        seed=seed,
        out_dir=runs_dir / "baseline",
        min_scale=0.6,  # crops keep most of the shape, which is what carries the label
        device="cpu",
    )


def demo_run_configs(
    data_dir: Path, runs_dir: Path, epochs: int, seed: int, low_res: int = DEMO_LOW_PX, until=None, prob=None
) -> dict[str, TrainConfig]:
    """The demo's two runs, by label: the baseline and TRD (trd's default reading at ``low_res``, or
    ``until`` and ``prob`` as ``TRDSchedule`` reads them), on the same recipe."""
    from trdcli.core.schedules import TRDSchedule

    trd_schedule = TRDSchedule(low_res, until=until, prob=prob, seed=seed)
    trd_schedule.validate(DEMO_FULL_PX)
    base = demo_config(data_dir, runs_dir, epochs, seed)
    return {label: replace(base, schedule=schedule, out_dir=runs_dir / label)
            for label, schedule in (("baseline", base.schedule), ("trd", trd_schedule))}  # fmt: skip


def run_demo(
    out: Path | None = None,
    epochs: int = 8,
    seed: int = 0,
    observer: TrainObserver | None = None,
    low_res: int = DEMO_LOW_PX,
    until: float | None = None,
    prob: float | None = None,
    images_per_class: tuple[int, int, int] = DEMO_IMAGES_PER_CLASS,
) -> DemoComparison:
    """Generate the texture-shortcut dataset under ``out`` (a new temporary folder if None); train the
    baseline and TRD (trd's default recipe, or ``until`` and ``prob`` read as ``TRDSchedule`` reads
    them); measure both on the cue-conflict split.

    ``images_per_class``: training, validation and conflict images of each shape.
    """
    from trdcli.evaluate.evaluation import class_shape_bias
    from trdcli.run.rundir import load_model
    from trdcli.run.train import train

    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="trd-demo-"))
    configs = demo_run_configs(root / "data", root / "runs", epochs, seed, low_res, until, prob)
    observer = observer or TrainObserver()
    observer.stage(f"generating shapes in {root / 'data'}")
    n_train, n_valid, n_conflict = images_per_class
    data_dir = make_texture_shortcut_dataset(root / "data", n_train, n_valid, n_conflict, seed=seed)
    runs, biases = {}, {}
    for label, config in configs.items():
        observer.run_label(label)
        runs[label] = train(config, observer)
        observer.stage("shape bias on the cue-conflict split")
        model = load_model(runs[label].run_dir)
        # The network's outputs are in its classes' order (the folders', sorted), not SHAPES'.
        biases[label] = class_shape_bias(model, runs[label].classes, data_dir / "conflict", DEMO_FULL_PX)
    observer.run_label("")
    baseline, trd = runs["baseline"], runs["trd"]
    return DemoComparison(
        data_dir, baseline.train_images, baseline.valid_images, baseline, trd, biases["baseline"], biases["trd"]
    )
