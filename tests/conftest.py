"""Shared fixtures: an isolated FLOPs cache and a bounded thread count."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """One FLOPs cache for the whole session, outside the user's ~/.cache.

    Session-wide (not per test) so module-scoped fixtures see it too, and each resolution
    of each architecture is measured once per test run.
    """
    cache_dir = tmp_path_factory.getbasetemp() / "trd-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRD_CACHE_DIR", str(cache_dir))
        yield cache_dir


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads():
    # Two cores: keep torch from oversubscribing when DataLoader workers run beside it.
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
