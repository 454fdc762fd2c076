"""The size a prepared copy of a training image needs, so that reduced steps read it at full detail.

A reduced step draws a random-resized crop (area a uniform share in ``[min_scale, 1]`` of the
image, aspect log-uniform in ``ratio``, :func:`trdcli.data.decode.random_crop_box`) and resizes
it to ``reduced_px`` x ``reduced_px``. Read from a smaller copy instead of the original, the same
crop (its box scaled by the copy's factor ``k``) loses nothing as long as both of its sides still
hold at least ``reduced_px`` pixels: the resize then only shrinks, as it did from the original.

The smallest side any crop can have is that of the smallest area at the most extreme aspect,
``sqrt(min_scale * W * H * q)`` with ``q = min(ratio[0], 1 / ratio[1])`` (3/4 for the usual
``(3/4, 4/3)``), or, where a draw can miss, the fallback after 10 misses: the largest central
crop within the aspect range, whose short side is the image's, ``min(W, H)`` (smaller than the
first only for a large ``min_scale`` on an elongated image). So the copy needs ``k >= reduced_px
/ min(sqrt(min_scale * W * H * q), min(W, H))``, each side rounded up.
For a square image at trd's ``min_scale`` 0.35 that is a shorter side of ``reduced_px / 0.512``:
219 px for 112 px steps; at torchvision's 0.08, 458 px. A copy is never larger than its original:
where ``k >= 1`` the original is kept as it is.
"""

from __future__ import annotations

import math

from trdcli.core.errors import ConfigError, require_positive_int

CROP_RATIO = (3 / 4, 4 / 3)  # random_crop_box's aspect range, as torchvision's RandomResizedCrop


def smallest_crop_side(width: int, height: int, min_scale: float, ratio: tuple[float, float] = CROP_RATIO) -> float:
    """The shortest side, in the image's pixels, of any random-resized crop drawn from it: the smallest
    area at the most extreme aspect, or the fallback central crop's (the image's own short side)."""
    require_positive_int("width", width)
    require_positive_int("height", height)
    if not 0 < min_scale <= 1:
        raise ConfigError(f"`min_scale` must be in (0, 1], got {min_scale}")
    if not 0 < ratio[0] <= 1 <= ratio[1]:
        raise ConfigError(f"the crop's aspect range must hold 1, got {ratio}")
    return min(math.sqrt(min_scale * width * height * min(ratio[0], 1 / ratio[1])), min(width, height))


def prepared_size_px(
    width: int, height: int, reduced_px: int, min_scale: float, ratio: tuple[float, float] = CROP_RATIO
) -> tuple[int, int]:
    """(width, height) to store a ``width`` x ``height`` image at, so that every crop a reduced step at
    ``reduced_px`` can draw still has ``reduced_px`` pixels across both sides; the image's own size
    when it has no more than that to give."""
    require_positive_int("reduced_px", reduced_px)
    factor = reduced_px / smallest_crop_side(width, height, min_scale, ratio)
    if factor >= 1:
        return width, height
    return min(width, math.ceil(width * factor)), min(height, math.ceil(height * factor))
