"""Shape and texture probes: their identities, checked directly."""

from __future__ import annotations

import math

import pytest
import torch

from trdcli.evaluate.probes import frequency_mask, high_pass, hybrid, low_pass, patch_shuffle


@pytest.fixture
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_1x1_grid_and_a_full_spectrum_leave_the_image_unchanged(images):
    assert torch.equal(patch_shuffle(images, 1, torch.Generator().manual_seed(1)), images)
    assert torch.allclose(low_pass(images, math.sqrt(2)), images, atol=1e-5)  # corners of the spectrum too


def test_low_plus_high_is_the_image(images):
    for radius in (0.5, 0.25, 0.125):
        assert torch.allclose(low_pass(images, radius) + high_pass(images, radius), images, atol=1e-5)


def test_low_pass_removes_the_frequencies_above_the_radius():
    x = torch.arange(32, dtype=torch.float32)
    fine = torch.cos(2 * math.pi * 0.375 * x).expand(1, 1, 32, 32)  # 0.375 cycles/px = 0.75 of Nyquist
    coarse = torch.cos(2 * math.pi * 0.0625 * x).expand(1, 1, 32, 32)  # 0.125 of Nyquist
    assert torch.allclose(low_pass(fine + coarse, 0.5), coarse, atol=1e-4)
    assert int(frequency_mask(32, 32, 0.5).sum()) == sum(
        1 for i in range(32) for j in range(32) if math.hypot(min(i, 32 - i), min(j, 32 - j)) <= 8
    )


def test_patch_shuffle_keeps_every_pixel_and_moves_whole_tiles(images):
    shuffled = patch_shuffle(images, 4, torch.Generator().manual_seed(2))
    assert not torch.equal(shuffled, images)
    for a, b in zip(shuffled, images, strict=True):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)  # the same multiset of values
        tiles = {tuple(b[:, r : r + 8, c : c + 8].flatten().tolist()) for r in range(0, 32, 8) for c in range(0, 32, 8)}
        moved = {tuple(a[:, r : r + 8, c : c + 8].flatten().tolist()) for r in range(0, 32, 8) for c in range(0, 32, 8)}
        assert moved == tiles


def test_same_seed_same_probe(images):
    first = patch_shuffle(images, 8, torch.Generator().manual_seed(5))
    assert torch.equal(first, patch_shuffle(images, 8, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, patch_shuffle(images, 8, torch.Generator().manual_seed(6)))


def test_hybrid_takes_each_band_from_its_image(images):
    a, b = images[:1], images[1:2]
    mixed = hybrid(a, b, 0.25)
    assert torch.allclose(low_pass(mixed, 0.25), low_pass(a, 0.25), atol=1e-5)
    assert torch.allclose(high_pass(mixed, 0.25), high_pass(b, 0.25), atol=1e-5)


def test_bad_probe_arguments():
    with pytest.raises(ValueError, match="`grid`=64 is finer"):
        patch_shuffle(torch.zeros(1, 3, 32, 32), 64)
    with pytest.raises(ValueError, match="`radius_frac` must be positive"):
        low_pass(torch.zeros(1, 3, 8, 8), 0)
