"""Antialiased batch resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trdcli.core.resize import RESIZE_MODES, resize_batch


def checkerboard(px: int) -> torch.Tensor:
    """A one-pixel black/white checkerboard, the worst case for aliasing."""
    idx = torch.arange(px)
    board = ((idx[:, None] + idx[None, :]) % 2).float()
    return board.expand(2, 3, px, px).contiguous()


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_checkerboard_reduced_by_two_is_nearly_uniform_grey(mode):
    out = resize_batch(checkerboard(64), 32, mode)
    assert out.shape == (2, 3, 32, 32)
    # Interior pixels: the border handling of bicubic differs slightly.
    interior = out[..., 2:-2, 2:-2]
    assert (interior - 0.5).abs().max() < 0.02
    assert interior.std() < 0.01


def test_nearest_keeps_full_contrast_so_the_checkerboard_test_can_fail():
    # Nearest picks one pixel of each 2x2 block: pure black or white, never the true grey.
    out = F.interpolate(checkerboard(64), size=(32, 32), mode="nearest")
    assert (out - 0.5).abs().min() == 0.5


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_antialiasing_also_holds_at_odd_factors_where_plain_bilinear_aliases(mode):
    # At 3x, plain bilinear samples exact pixel centres and keeps the full black/white contrast.
    plain = F.interpolate(checkerboard(66), size=(22, 22), mode="bilinear", antialias=False)
    assert plain.std() > 0.45
    out = resize_batch(checkerboard(66), 22, mode)
    assert (out[..., 2:-2, 2:-2] - 0.5).abs().max() < 0.1


def test_same_size_returns_the_same_object():
    images = torch.rand(4, 3, 32, 32)
    assert resize_batch(images, 32) is images
    assert resize_batch(images, (32, 32)) is images


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_keeps_dtype(dtype):
    images = (torch.rand(2, 3, 40, 40) * 255).to(dtype)
    out = resize_batch(images, 20)
    assert out.dtype == dtype
    assert out.shape == (2, 3, 20, 20)
    # Same values as resizing in float32, up to the dtype's precision.
    reference = resize_batch(images.float(), 20)
    tolerance = {torch.float16: 0.2, torch.bfloat16: 1.0, torch.uint8: 0.5}.get(dtype, 1e-4)
    assert (out.float() - reference).abs().max() <= tolerance


def test_keeps_channels_last_and_contiguous_formats():
    images = torch.rand(2, 3, 48, 48).contiguous(memory_format=torch.channels_last)
    out = resize_batch(images, 24)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    plain = resize_batch(torch.rand(2, 3, 48, 48), 24)
    assert plain.is_contiguous()


def test_non_square_target_and_values_match_torchvision_resize():
    from torchvision.transforms.v2 import functional as TF

    images = torch.rand(2, 3, 60, 80)
    out = resize_batch(images, (30, 20))
    assert out.shape == (2, 3, 30, 20)
    expected = TF.resize(images, [30, 20], antialias=True)
    assert torch.allclose(out, expected, atol=1e-5)


def test_area_mode_is_the_mean_of_each_block():
    images = torch.rand(1, 3, 8, 8)
    out = resize_batch(images, 4, "area")
    expected = images.reshape(1, 3, 4, 2, 4, 2).mean(dim=(3, 5))
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to check the device is kept")
def test_keeps_device():
    images = torch.rand(2, 3, 32, 32, device="cuda")
    assert resize_batch(images, 16).device == images.device


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.rand(2, 3, 8, 8), 4, "nearest"), "mode must be one of.*'nearest'"),
        ((torch.rand(3, 8, 8), 4), r"\(N, C, H, W\) tensor, got \(3, 8, 8\)"),
        ((torch.rand(2, 3, 8, 8), 0), "positive integers, got 0"),
        ((torch.rand(2, 3, 8, 8), (4, 4, 4)), r"\(height, width\) pair"),
    ],
)
def test_bad_input_raises_with_the_value(args, message):
    with pytest.raises(ValueError, match=message):
        resize_batch(*args)
