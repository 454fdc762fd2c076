"""Photo-like generated images: what a loader timing needs where no real photos are at hand.

Smooth shading, object edges and sensor grain, saved as JPEG: decoding one costs what a real
photo of the same size costs (it scales with pixels), and its spectrum falls off like a
photo's, unlike white noise. Used by ``benchmarks/make_photos.py`` (the GPU script's fallback
data) and by the tests; real photos are better wherever there are some.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB image of ``width`` x ``height`` with a photo's structure, the same for the same seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 8, width // 2)), y0 + int(rng.integers(height // 8, height // 2))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
