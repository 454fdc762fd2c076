"""Shared fixtures: an isolated FLOPs cache and a bounded thread count."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's FLOPs cache out of the user's ~/.cache."""
    cache_dir = tmp_path_factory.getbasetemp() / "trd-cache"
    monkeypatch.setenv("TRD_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads():
    # Two cores: keep torch from oversubscribing when DataLoader workers run beside it.
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
