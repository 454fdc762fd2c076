"""Image files -> 8-bit RGB PIL images, and training crops delivered at the size a step trains at.

:func:`load_random_crop` draws the random-resized-crop box first, then asks libjpeg for a
DCT-scaled decode (Pillow's draft mode: 1/2, 1/4 or 1/8 of the size, for a fraction of the
work) at the largest reduction that still leaves enough pixels across the box, and
resamples the box with an antialiased filter: for a reduced step, to the full size and then
down to the step's (the same image the training loop used to reduce), or with
``full_px=None`` straight to the step's size in one pass. Other formats are decoded in full.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

# libjpeg's DCT scaling factors, largest first (Pillow's draft picks among these).
JPEG_REDUCTIONS = (8, 4, 2, 1)
# EXIF orientations that swap width and height (rotations by 90 and 270 degrees).
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


def to_rgb(image: Image.Image) -> Image.Image:
    """A loaded image of any mode as 8-bit RGB (``image`` itself if it is): 16-bit and float
    rescaled, alpha composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float images: map the type's range onto 0-255, not clip it.
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if mode == "F" and array.max() <= 1.0 else (65535.0 if array.max() > 255 else 255.0)
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open any image file as a loaded 8-bit RGB PIL image, or raise ``OSError``/``ValueError``."""
    with Image.open(path) as image:
        image.seek(0)  # first frame of an animation
        image.load()
        rgb = to_rgb(ImageOps.exif_transpose(image))
        return rgb.copy() if rgb is image else rgb  # the file's own image closes with it


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image`` as displayed, after its EXIF orientation; read from the header only."""
    width, height = image.size
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def random_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random-resized crop (Szegedy et al. 2015) of a ``width`` x ``height`` image.

    The crop covers a uniform ``scale`` share of the area with a log-uniform aspect
    ``ratio``; after 10 misses it falls back to the largest central crop within ``ratio``.
    Draws from torch's generator, as torchvision's ``RandomResizedCrop`` does, so fastai's
    per-worker seeding makes it reproducible.
    """
    import torch

    area = width * height
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, size=(1,)).item())
            left = int(torch.randint(0, width - crop_w + 1, size=(1,)).item())
            return left, top, left + crop_w, top + crop_h
    aspect = width / height
    if aspect < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def draft_reduction(box: tuple[float, float, float, float], out_px: int) -> int:
    """The largest JPEG DCT reduction that leaves at least ``out_px`` pixels across both sides of ``box``."""
    shorter_px = min(box[2] - box[0], box[3] - box[1])
    return next(r for r in JPEG_REDUCTIONS if shorter_px / r >= out_px or r == 1)


def _decode_reduced(image: Image.Image, reduction: int) -> float:
    """Set up a DCT-scaled decode of a JPEG ``image``; the factor its coordinates shrink by (1 if none)."""
    if reduction == 1 or image.format != "JPEG":
        return 1.0
    full_width = image.size[0]
    drafted = image.draft(None, (image.size[0] // reduction, image.size[1] // reduction))
    if drafted is None:  # progressive or multi-scan files Pillow cannot scale
        return 1.0
    return full_width / drafted[1][2]


def load_random_crop(
    path: str | Path,
    out_px: int,
    scale: tuple[float, float],
    *,
    full_px: int | None = None,
    draft: bool = True,
    flip: bool = False,
    copy: tuple[str | Path, int, int] | None = None,
) -> Image.Image:
    """A random-resized crop of the image at ``path``, ``out_px`` square, in 8-bit RGB.

    With ``full_px`` (above ``out_px``), the crop is made at ``full_px`` and then reduced
    to ``out_px``: exactly a full-resolution training image, downsampled, which is what a
    reduced TRD step trains on. Without it, the crop box is resampled straight to
    ``out_px`` in one pass: cheaper to load, but it keeps more texture near the full
    resolution's limit (docs/benchmarks.md). With ``draft``, a JPEG is decoded at the
    largest DCT reduction that keeps enough pixels across the crop for the first
    resampling; without it (or for other formats), in full. The box is drawn on the image
    as displayed (EXIF orientation applied); every resampling is antialiased bilinear.
    Raises what Pillow raises for an unreadable file.

    ``copy``: (a prepared copy's path, the original's displayed width and height), from
    ``trd prepare``'s manifest. The box is drawn on the original's size, with the same random draws,
    and read from the copy scaled into its coordinates: the same crop, from a smaller file.
    """
    crop_px = full_px if full_px is not None and full_px > out_px else out_px
    with Image.open(copy[0] if copy else path) as image:
        image.seek(0)
        if copy:  # written upright (orientation applied), at (copy width / width) of the original
            (width, height), (x, y) = copy[1:], image.size
            left, top, right, bottom = random_crop_box(width, height, scale)
            box = (left * x / width, top * y / height, right * x / width, bottom * y / height)
        else:
            box = random_crop_box(*oriented_size(image), scale)
        shrink = _decode_reduced(image, draft_reduction(box, crop_px)) if draft else 1.0
        image.load()
        if not copy:
            ImageOps.exif_transpose(image, in_place=True)
        # Resized inside the with block: the file's own image needs no copy to outlive it.
        scaled_box = tuple(v / shrink for v in box)
        cropped = to_rgb(image).resize((crop_px, crop_px), Image.Resampling.BILINEAR, box=scaled_box)
    if crop_px != out_px:
        cropped = cropped.resize((out_px, out_px), Image.Resampling.BILINEAR)
    return cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else cropped
