"""Image folders -> fastai DataLoaders, with a clear error for every way a real folder goes wrong.

Layouts (design.md §5): ``DATA/train/<class>/*`` with ``DATA/val|valid|test/<class>/*``
(ImageNet's), or class folders directly in ``DATA`` with a ``valid_pct`` hold-out.
Every image becomes 8-bit RGB: greyscale, palette, RGBA (composited on white), CMYK,
16-bit and float images, animated GIFs (first frame) and EXIF-rotated photos alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trdcli.decode import load_random_crop, load_rgb
from trdcli.errors import ConfigError, DataError

if TYPE_CHECKING:
    from fastai.data.core import DataLoaders

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VALID_FOLDER_NAMES = ("val", "valid", "test")
# Validation resizes to size / 0.875 and centre-crops `size` (224 from 256), the standard
# ImageNet evaluation crop.
CENTER_CROP_FRAC = 0.875


@dataclass(frozen=True)
class BadImage:
    path: Path
    reason: str


@dataclass
class ImageFolder:
    """The items of a classification folder, split into training and validation."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    valid: list[tuple[Path, int]]
    layout: str  # "imagenet" or "class-folders"
    valid_name: str | None = None
    ignored_files: int = 0
    skipped: list[BadImage] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> tuple[list[Path], int]:
    """Image files under ``folder`` (recursively, hidden files skipped) and the count of other files."""
    images, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                ignored += 1
    return images, ignored


def _collect(split_dir: Path, classes: Sequence[str]) -> tuple[list[tuple[Path, int]], int]:
    items, ignored = [], 0
    for label, name in enumerate(classes):
        images, other = _images_in(split_dir / name)
        items.extend((path, label) for path in images)
        ignored += other
    return items, ignored


def _classes_with_images(split_dir: Path) -> tuple[list[str], list[str]]:
    """(classes holding at least one image, empty class folders)."""
    with_images, empty = [], []
    for folder in _class_dirs(split_dir):
        images, _ = _images_in(folder)
        (with_images if images else empty).append(folder.name)
    return with_images, empty


def scan_image_folder(root: str | Path, valid_pct: float | None = None, seed: int = 0) -> ImageFolder:
    """Find the classes and images of ``root``; raise :class:`DataError` on anything unusable."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder of class folders")
    if valid_pct is not None and not 0 < valid_pct < 1:
        raise ConfigError(f"`valid_pct` must be a fraction in (0, 1), got {valid_pct}")

    train_dir = root / "train"
    valid_dir = next((root / n for n in VALID_FOLDER_NAMES if (root / n).is_dir()), None)
    if train_dir.is_dir():
        if valid_dir is None and valid_pct is None:
            raise DataError(
                f"{root} has train/ but no val/, valid/ or test/ folder; add one or hold out a fraction with "
                "`valid_pct`",
            )
        classes, empty = _classes_with_images(train_dir)
        _check_classes(train_dir, classes, empty)
        if valid_dir is not None:
            valid_classes, _ = _classes_with_images(valid_dir)
            if valid_classes != classes:
                missing = sorted(set(classes) - set(valid_classes))
                extra = sorted(set(valid_classes) - set(classes))
                detail = "; ".join(
                    part
                    for part in (
                        f"missing from {valid_dir.name}/: {', '.join(missing[:5])}" if missing else "",
                        f"not in train/: {', '.join(extra[:5])}" if extra else "",
                    )
                    if part
                )
                raise DataError(f"validation classes differ from training classes ({detail})")
            train, ignored_train = _collect(train_dir, classes)
            valid, ignored_valid = _collect(valid_dir, classes)
            return ImageFolder(
                root, classes, train, valid, "imagenet", valid_dir.name, ignored_files=ignored_train + ignored_valid
            )
        items, ignored = _collect(train_dir, classes)
        train, valid = _split(items, valid_pct, seed)
        return ImageFolder(root, classes, train, valid, "imagenet", None, ignored_files=ignored)

    classes, empty = _classes_with_images(root)
    if not classes and not empty:
        loose, _ = _images_in(root)
        if loose:
            raise DataError(f"{root} holds images but no class folders; put each class's images in its own folder")
        raise DataError(f"{root} is empty: expected train/<class>/ and val/<class>/ folders, or class folders")
    _check_classes(root, classes, empty)
    if valid_pct is None:
        raise DataError(
            f"{root} has class folders but no train/ and val/; set `valid_pct` (e.g. 0.2) to hold out a share for "
            "validation",
        )
    items, ignored = _collect(root, classes)
    train, valid = _split(items, valid_pct, seed)
    return ImageFolder(root, classes, train, valid, "class-folders", None, ignored_files=ignored)


def _check_classes(folder: Path, classes: list[str], empty: list[str]) -> None:
    if not classes:
        if empty:
            raise DataError(f"no images in the class folders of {folder} ({', '.join(empty[:5])} are empty)")
        raise DataError(f"no class folders in {folder}")
    if len(classes) == 1:
        raise DataError(f"only one class ({classes[0]}) in {folder}: a classifier needs at least two")


def _split(items: list[tuple[Path, int]], valid_pct: float, seed: int):
    """A stratified random hold-out: every class keeps at least one image on each side."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for label in sorted({lbl for _, lbl in items}):
        members = [item for item in items if item[1] == label]
        order = rng.permutation(len(members))
        n_valid = min(max(1, round(len(members) * valid_pct)), len(members) - 1)
        if n_valid < 1:
            raise DataError(f"class {label} has a single image: cannot hold one out for validation")
        valid.extend(members[i] for i in order[:n_valid])
        train.extend(members[i] for i in order[n_valid:])
    return train, valid


def _check_one(path: Path) -> str | None:
    try:
        image = load_rgb(path)
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if min(image.size) < 1:
        return "empty image"
    return None


def median_short_side_px(paths: Sequence[Path], most: int = 200) -> int | None:
    """The median shorter side of up to ``most`` evenly spaced images, from their headers (nothing decoded)."""
    from PIL import Image

    if not paths:
        return None
    step = max(1, len(paths) // most)
    sides = []
    for path in list(paths)[::step][:most]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # an unreadable file is find_bad_images' to report, not this estimate's
            continue
    return int(np.median(sides)) if sides else None


def find_bad_images(paths: Sequence[Path], workers: int = 0) -> list[BadImage]:
    """Decode every image once and return those that cannot be read (truncated, corrupt, not an image)."""
    if workers > 1 and len(paths) > 256:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(_check_one, paths, chunksize=64))
    else:
        reasons = [_check_one(p) for p in paths]
    return [BadImage(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def drop_bad_images(folder: ImageFolder, bad: Sequence[BadImage]) -> ImageFolder:
    """``folder`` without ``bad``; refuses to leave a class or a split empty."""
    bad_paths = {b.path for b in bad}
    train = [item for item in folder.train if item[0] not in bad_paths]
    valid = [item for item in folder.valid if item[0] not in bad_paths]
    for split, items in (("training", train), ("validation", valid)):
        present = {label for _, label in items}
        lost = [folder.classes[i] for i in range(folder.num_classes) if i not in present]
        if lost:
            raise DataError(f"after skipping unreadable images, {split} has no image of class {', '.join(lost[:5])}")
    return ImageFolder(
        folder.root,
        folder.classes,
        train,
        valid,
        folder.layout,
        folder.valid_name,
        folder.ignored_files,
        skipped=list(bad),
    )


class ImageItems:
    """A torch Dataset of (uint8 CHW image, label) from paths, with train or eval cropping.

    Training items are random-resized crops, flipped half the time, at ``size_px`` or at the
    size given with the index (``dataset[i, px]``: how :class:`~trdcli.sized_loader.SizedBatchesDL`
    asks for a reduced step's images): the full-size crop downsampled, or with
    ``direct_crops`` the crop resampled straight to ``px``; with ``draft``, JPEGs are decoded
    at reduced scale when the crop allows (:func:`trdcli.decode.load_random_crop`). Evaluation items are
    resized and centre-cropped at ``size_px``, always decoded in full.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, int]],
        size_px: int,
        train: bool,
        min_scale: float,
        draft: bool = True,
        direct_crops: bool = False,
    ):
        self.items = list(items)
        self.size_px = size_px
        self.train = train
        self.min_scale = min_scale
        self.draft = draft
        self.direct_crops = direct_crops  # reduced crops resampled straight to size, not from a full one

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int | tuple[int, int]):
        import torch
        from fastai.torch_core import TensorCategory, TensorImage
        from torchvision.transforms.v2 import functional as TF

        index, px = index if isinstance(index, tuple) else (index, self.size_px)
        path, label = self.items[index]
        flip = bool(torch.rand(()) < 0.5) if self.train else False
        try:
            if self.train:
                full_px = None if self.direct_crops else self.size_px
                image = load_random_crop(path, px, (self.min_scale, 1.0), full_px=full_px, draft=self.draft, flip=flip)
            else:
                image = load_rgb(path)
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            raise DataError(f"cannot read image {path}: {exc}") from exc
        if not self.train:
            image = _centre_crop(image, self.size_px)
        return TensorImage(TF.pil_to_tensor(image)), TensorCategory(label)


def _centre_crop(image, size_px: int):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    image = TF.resize(image, round(size_px / CENTER_CROP_FRAC), InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(image, [size_px, size_px])


def build_dataloaders(
    folder: ImageFolder,
    size_px: int,
    batch_size: int,
    *,
    workers: int,
    device,
    min_scale: float = 0.35,
    draft: bool = True,
    direct_crops: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoaders:
    """fastai DataLoaders: random-resized-crop + flip for training, resize + centre crop for
    validation, both normalised with ImageNet statistics on ``device``. The training loader
    is a :class:`~trdcli.sized_loader.SizedBatchesDL`: ``TRDCallback`` can give it a size per
    batch; with ``draft`` it decodes JPEGs at reduced scale where the crop allows.

    ``batch_size`` is the global batch: with ``world_size`` ranks each trains on its
    ``batch_size / world_size`` share of every global batch, and validates on every image.
    """
    from fastai.data.core import DataLoaders

    if batch_size > len(folder.train):
        raise ConfigError(f"`batch_size` {batch_size} is larger than the {len(folder.train)} training images")
    local_batch = batch_size // world_size
    train_dl = image_dataloader(
        folder.train, size_px, local_batch, True, workers=workers, device=device, min_scale=min_scale, draft=draft,
        direct_crops=direct_crops, rank=rank, world_size=world_size,
    )  # fmt: skip
    # Validation has no gradients to keep, so it can take twice the batch in the same memory.
    valid_dl = image_dataloader(folder.valid, size_px, local_batch * 2, False, workers=workers, device=device)
    dls = DataLoaders(train_dl, valid_dl, device=device)
    dls.c = folder.num_classes
    dls.vocab = folder.classes
    return dls


def image_dataloader(
    items: Sequence[tuple[Path, int]],
    size_px: int,
    batch_size: int,
    train: bool,
    *,
    workers: int,
    device,
    min_scale: float = 0.35,
    draft: bool = True,
    direct_crops: bool = False,
    rank: int = 0,
    world_size: int = 1,
):
    """A fastai DataLoader of normalised image batches: training crops (shuffled, last partial
    batch dropped; a :class:`~trdcli.sized_loader.SizedBatchesDL`, JPEGs decoded at reduced
    scale with ``draft``) or evaluation crops (in order, every image, decoded in full)."""
    from fastai.data.core import TfmdDL
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.vision.core import imagenet_stats

    from trdcli.sized_loader import SizedBatchesDL

    shard = {"rank": rank, "world_size": world_size} if train else {}
    return (SizedBatchesDL if train else TfmdDL)(
        ImageItems(items, size_px, train, min_scale, draft=draft and train, direct_crops=direct_crops),
        **shard,
        bs=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        after_batch=[IntToFloatTensor(), Normalize.from_stats(*imagenet_stats, cuda=False)],
        device=device,
        persistent_workers=workers > 0,
    )


def default_workers(processes_here: int = 1) -> int:
    """Data-loading processes of one training process: its share of the cores, less one for
    its training loop, at most 16. ``processes_here``: training processes on this machine
    (a distributed run's ranks on one node share its cores).

    On a GPU a step at half resolution trains 3-4x as many images per second as a full one,
    while its images cost a worker about as much (docs/benchmarks.md: 2.58 against 2.32 ms
    on ImageNet-size photos; 1.58 with direct crops), so reduced steps need several times
    the workers full ones do: the cap is twice the usual 8.
    """
    return max(0, min((os.cpu_count() or 1) // processes_here - 1, 16))
