"""Antialiased resizing of image batches.

TRD removes texture by reducing resolution. Nearest-neighbour or plain bilinear
downsampling aliases, and aliasing manufactures exactly the high-frequency texture TRD is
meant to remove, so every mode here low-pass filters before it samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trdcli.core.errors import ConfigError, is_int

RESIZE_MODES = ("bilinear", "bicubic", "area")
"""``bilinear`` and ``bicubic`` use ``antialias=True`` (the filters of PIL and torchvision's
``Resize``); ``area`` averages each output pixel's footprint (exact 2x2 means for 224 -> 112)."""


def check_resize_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`RESIZE_MODES`; a ConfigError otherwise."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r} (nearest would alias)")
    return mode


def _as_hw(size_px: int | tuple[int, int]) -> tuple[int, int]:
    if is_int(size_px):
        height, width = size_px, size_px
    elif isinstance(size_px, tuple | list) and len(size_px) == 2:
        height, width = size_px
    else:
        raise ConfigError(f"size_px must be an int or an (height, width) pair, got {size_px!r}")
    if not all(is_int(v) and v > 0 for v in (height, width)):
        raise ConfigError(f"size_px must be positive integers, got {size_px!r}")
    return int(height), int(width)


def resize_batch(images: torch.Tensor, size_px: int | tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize an ``(N, C, H, W)`` batch to ``size_px`` (an int for square, or ``(H, W)``).

    Keeps dtype, device and memory format (``channels_last`` in, ``channels_last`` out).
    Returns ``images`` itself, not a copy, when it already has the target size.
    Integer batches (``uint8`` images) are resized in float and rounded back.
    """
    check_resize_mode(mode)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"images must be an (N, C, H, W) tensor, got {shape}")
    height, width = _as_hw(size_px)
    if images.shape[-2:] == (height, width):
        return images

    channels_last = (
        images.shape[1] > 1 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    )
    # Antialiased kernels exist for float32/float64 on every backend; half precision and
    # integer images are filtered in float32 and cast back.
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    if mode == "area":
        out = F.interpolate(work, size=(height, width), mode="area")
    else:
        out = F.interpolate(work, size=(height, width), mode=mode, antialias=True, align_corners=False)
    if not images.dtype.is_floating_point:
        info = torch.iinfo(images.dtype)
        out = out.round_().clamp_(info.min, info.max)
    out = out.to(images.dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=memory_format)
