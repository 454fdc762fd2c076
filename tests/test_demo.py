"""The demo's data shows the mechanism it claims: a texture shortcut in training that half resolution erases."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from trdcli.cli.demo import CLASS_STRIPES, SHAPES, _stripes, make_texture_shortcut_dataset, run_demo
from trdcli.core.resize import resize_batch


@pytest.mark.parametrize("direction", SHAPES)
def test_the_stripes_are_visible_at_full_size_and_erased_at_half(direction):
    stripes = _stripes(np.random.default_rng(0), 104, CLASS_STRIPES[direction], np.array([120.0, 130.0, 140.0]))
    batch = torch.from_numpy(stripes).permute(2, 0, 1)[None].float()

    def contrast(images):  # spatial std per colour channel: the stripes' amplitude
        return images.std(dim=(2, 3)).mean()

    # Much of the stripes' contrast survives at the demo's 96 px (65% of it for stripes along x
    # or y, 42% for the finer diagonals), hardly any at half that (13% and 2%).
    full, half = contrast(resize_batch(batch, 96)), contrast(resize_batch(batch, 48))
    assert full > 0.4 * contrast(batch) and half < 0.15 * contrast(batch) and full > 4 * half


def test_texture_predicts_the_class_in_training_only(tmp_path):
    root = make_texture_shortcut_dataset(tmp_path, n_train=20, n_valid=8, n_conflict=6, seed=1)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(SHAPES)
    assert len(list((root / "val").rglob("*.png"))) == 32
    conflict = sorted((root / "conflict").rglob("*.png"))
    assert len(conflict) == 24
    for path in conflict:
        shape, texture = re.match(r"([a-z]+)\d+-([a-z]+)\d+\.png", path.name).groups()
        assert shape == path.parent.name and texture != shape and texture in SHAPES
    assert Image.open(conflict[0]).size == (104, 104)


def test_same_seed_same_images(tmp_path):
    a = make_texture_shortcut_dataset(tmp_path / "a", n_train=2, n_valid=1, n_conflict=3, seed=4)
    b = make_texture_shortcut_dataset(tmp_path / "b", n_train=2, n_valid=1, n_conflict=3, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert Counter(f.parts[0] for f in files) == {"train": 8, "val": 4, "conflict": 12}


def test_a_short_demo_runs_end_to_end(tmp_path):
    comparison = run_demo(tmp_path, epochs=1, images_per_class=(8, 4, 3))
    assert comparison.train_images == 32 and comparison.valid_images == 16
    assert comparison.trd.config.size_px == 96 and comparison.trd.compute.compute_saved_frac > 0.3
    for bias in (comparison.baseline_shape_bias, comparison.trd_shape_bias):
        assert bias.images == 12 and bias.shape_decisions + bias.texture_decisions <= 12
