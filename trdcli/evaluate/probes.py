"""Shape and texture probes: image batches with one cue destroyed, the other kept. Pure, deterministic for a seed.

- :func:`patch_shuffle` cuts each image into a ``grid`` x ``grid`` mosaic and shuffles the
  tiles: global shape is gone, local texture stays (Zhang & Zhu, ICML 2019, arXiv 1905.09797).
- :func:`low_pass` keeps the spatial frequencies within ``radius_frac`` of the Nyquist
  frequency: fine texture is gone, shape stays (Wang et al., CVPR 2020, arXiv 1905.13545).
- :func:`hybrid` is the low frequencies of one image plus the high frequencies of another,
  so a classifier's answer says which band it trusts.

A network trained on reduced images has seen low-passed images in training, so its
low-pass accuracy flatters it; the patch-shuffle drop is the cleaner texture signal.
"""

from __future__ import annotations

import torch

from trdcli.core.errors import ConfigError, require_positive_int


def patch_shuffle(images: torch.Tensor, grid: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image's ``grid`` x ``grid`` tiles in a random order (one order per image).

    Tiles are ``H // grid`` x ``W // grid``; a remainder strip at the right and bottom edge
    stays in place. ``grid=1`` returns the images unchanged. Every pixel keeps its value.
    """
    require_positive_int("grid", grid)
    n, c, height, width = images.shape
    tile_h, tile_w = height // grid, width // grid
    if tile_h < 1 or tile_w < 1:
        raise ConfigError(f"`grid`={grid} is finer than the {height}x{width} px images")
    out = images.clone()
    body = images[:, :, : tile_h * grid, : tile_w * grid]
    # (n, c, grid, tile_h, grid, tile_w) -> (n, grid*grid, c, tile_h, tile_w)
    tiles = (
        body.reshape(n, c, grid, tile_h, grid, tile_w)
        .permute(0, 2, 4, 1, 3, 5)
        .reshape(n, grid * grid, c, tile_h, tile_w)
    )
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(n)]).to(images.device)
    shuffled = torch.gather(tiles, 1, order.view(n, -1, 1, 1, 1).expand_as(tiles))
    body_out = shuffled.reshape(n, grid, grid, c, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5).reshape(body.shape)
    out[:, :, : tile_h * grid, : tile_w * grid] = body_out
    return out


def frequency_mask(height: int, width: int, radius_frac: float, device=None) -> torch.Tensor:
    """True for the (unshifted, FFT-ordered) frequencies within ``radius_frac`` of the Nyquist frequency.

    Distance is Euclidean in cycles per pixel, scaled so that 1.0 reaches 0.5 cycles/pixel
    along an axis; ``radius_frac`` of sqrt(2) or more covers the whole spectrum, corners too.
    """
    if not radius_frac > 0:
        raise ConfigError(f"`radius_frac` must be positive, got {radius_frac!r}")
    fy = torch.fft.fftfreq(height, device=device).view(-1, 1)
    fx = torch.fft.fftfreq(width, device=device).view(1, -1)
    return torch.sqrt(fx**2 + fy**2) <= radius_frac * 0.5 + 1e-12


def low_pass(images: torch.Tensor, radius_frac: float) -> torch.Tensor:
    """The images with every spatial frequency beyond ``radius_frac`` of Nyquist removed."""
    mask = frequency_mask(images.shape[-2], images.shape[-1], radius_frac, images.device)
    spectrum = torch.fft.fft2(images.float())
    return torch.fft.ifft2(spectrum * mask).real.to(images.dtype)


def high_pass(images: torch.Tensor, radius_frac: float) -> torch.Tensor:
    """What :func:`low_pass` removes: ``images - low_pass(images, radius_frac)``."""
    return images - low_pass(images, radius_frac)


def hybrid(low_from: torch.Tensor, high_from: torch.Tensor, radius_frac: float) -> torch.Tensor:
    """The low frequencies of ``low_from`` plus the high frequencies of ``high_from`` (same shapes)."""
    if low_from.shape != high_from.shape:
        raise ConfigError(
            f"hybrid needs batches of one shape, got {tuple(low_from.shape)} and {tuple(high_from.shape)}"
        )
    return low_pass(low_from, radius_frac) + high_pass(high_from, radius_frac)
