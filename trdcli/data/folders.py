"""Image folders -> lists of (path, label), with a clear error for every way a real folder goes wrong.

Layouts (docs/cli.md, "Images"): ``DATA/train/<class>/*`` with ``DATA/val|valid|test/<class>/*``
(ImageNet's), or class folders directly in ``DATA`` with a ``valid_pct`` hold-out.
Every image becomes 8-bit RGB: greyscale, palette, RGBA (composited on white), CMYK,
16-bit and float images, animated GIFs (first frame) and EXIF-rotated photos alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trdcli.core.errors import ConfigError, DataError
from trdcli.data.decode import load_rgb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VALID_FOLDER_NAMES = ("val", "valid", "test")


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
        from trdcli.data.pool import clean_pool

        with clean_pool(workers) as pool:
            reasons = list(pool.map(_check_one, paths, chunksize=64))
    else:
        reasons = [_check_one(p) for p in paths]
    return [BadImage(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def unreadable_images_error(bad: Sequence[BadImage], remedy: str = "Fix or remove them") -> DataError:
    """The one line that names unreadable images: the first three with their reasons, and how many more."""
    listed = "; ".join(f"{b.path} ({b.reason})" for b in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return DataError(f"{len(bad)} unreadable image(s): {listed}{more}. {remedy}")


def require_readable_if_few(folder: ImageFolder, batch_size: int) -> None:
    """With fewer training files than a batch, whether they are images at all decides the message: a
    folder of files that cannot be decoded is named as such, not as too few for the batch. Decoding
    fewer than a batch of files costs nothing next to a run."""
    if len(folder.train) < batch_size:
        bad = find_bad_images([path for path, _ in folder.train])
        if bad:
            raise unreadable_images_error(bad)


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
