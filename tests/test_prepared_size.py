"""The size of a prepared copy: every crop a reduced step can draw keeps its full detail, and no more."""

from __future__ import annotations

import math

import pytest

from trdcli.core.errors import ConfigError
from trdcli.core.prepared_size import prepared_size_px, smallest_crop_side


def test_a_square_image_by_hand():
    # The smallest crop: 35% of the area at aspect 3/4, so its short side is sqrt(0.35 * 0.75) = 0.5123 of
    # the image's; 112 px of it needs an image of 112 / 0.5123 = 218.6 -> 219 px.
    assert prepared_size_px(224, 224, 112, 0.35) == (219, 219)
    assert prepared_size_px(1000, 1000, 112, 0.35) == (219, 219)
    # torchvision's 0.08: sqrt(0.06) = 0.2449, 112 / 0.2449 = 457.2 -> 458 px.
    assert prepared_size_px(1000, 1000, 112, 0.08) == (458, 458)


def test_an_image_with_nothing_to_spare_is_kept_as_it_is():
    assert prepared_size_px(160, 160, 112, 0.35) == (160, 160)  # would need 219: never enlarged
    assert prepared_size_px(500, 375, 112, 0.08) == (500, 375)  # would need 528 x 396


# The extreme draws of random_crop_box (trdcli/data/decode.py), written out: the smallest area, at
# each end of the aspect range, with the box's own rounding.
def _extreme_crops(width: int, height: int, min_scale: float) -> list[tuple[int, int]]:
    area = min_scale * width * height
    crops = [(round(math.sqrt(area * a)), round(math.sqrt(area / a))) for a in (3 / 4, 4 / 3)]
    return [(w, h) for w, h in crops if 0 < w <= width and 0 < h <= height]


@pytest.mark.parametrize("min_scale", [0.08, 0.35, 0.5, 1.0])
@pytest.mark.parametrize("reduced_px", [64, 96, 112, 160])
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (1024, 683), (4000, 3000), (640, 480), (800, 800)])
def test_the_smallest_crops_of_the_copy_still_cover_the_reduced_size(size, reduced_px, min_scale):
    width, height = size
    copy_w, copy_h = prepared_size_px(width, height, reduced_px, min_scale)
    assert copy_w <= width and copy_h <= height
    if (copy_w, copy_h) == (width, height):  # kept: the original itself had no more to give
        assert smallest_crop_side(width, height, min_scale) <= reduced_px * width / (width - 1) or width < 2
        return
    crops = _extreme_crops(copy_w, copy_h, min_scale)
    # Where even the extreme ones miss (a large min_scale), every draw is larger: the fallback central
    # crop, whose short side is the copy's.
    assert all(min(w, h) >= reduced_px for w, h in crops or [(copy_w, copy_h)]), crops
    # And no larger than it must be: the copy's smallest crop is within 2 px of the reduced size.
    assert smallest_crop_side(copy_w, copy_h, min_scale) < reduced_px + 2
    # The copy keeps the image's shape (each side rounded up: within a pixel of it).
    assert abs(copy_w - copy_h * width / height) <= 1 + width / height


@pytest.mark.parametrize(
    ("args", "message"),
    [((224, 224, 112, 0.0), "min_scale"), ((224, 224, 0, 0.35), "reduced_px"), ((0, 224, 112, 0.35), "width")],
)
def test_bad_arguments(args, message):
    with pytest.raises(ConfigError, match=message):
        prepared_size_px(*args)
