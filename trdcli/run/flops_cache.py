"""The FLOPs cache: counts measured once per (architecture, classes, channels, resolution, torch),
kept in a JSON file so that ``trd estimate-cost`` answers without importing torch."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from trdcli.core.cost import FlopsTable, ImageFlops
from trdcli.run.fileio import atomic_write_text

CACHE_VERSION = 3  # 2: grouped-convolution backward counted correctly; 3: whether the model has BatchNorm


def default_cache_dir() -> Path:
    """``$TRD_CACHE_DIR``, else ``$XDG_CACHE_HOME/trdcli``, else ``~/.cache/trdcli``."""
    if os.environ.get("TRD_CACHE_DIR"):
        return Path(os.environ["TRD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trdcli"


class FlopsCache:
    """FLOPs per image by (architecture, classes, channels, resolution), in memory and in a JSON file.

    The disk file is best effort: a read-only or full disk makes it a memory-only cache,
    never an error. Entries carry the torch version, whose FLOP-counting rules they reflect.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, dict[str, int]] = {}
        self._loaded = path is None

    def _load(self) -> None:
        self._loaded = True
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
            entries = data.get("entries", {})
            self._entries.update({k: v for k, v in entries.items() if isinstance(v, dict)})

    def get(self, key: str, px: int) -> ImageFlops | None:
        if not self._loaded:
            self._load()
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            return ImageFlops(
                px=px,
                forward_flops=int(entry["forward_flops"]),
                train_flops=int(entry["train_flops"]),
                has_batchnorm=bool(entry["has_batchnorm"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, flops: ImageFlops) -> None:
        self._entries[key] = {
            "forward_flops": flops.forward_flops,
            "train_flops": flops.train_flops,
            "has_batchnorm": flops.has_batchnorm,
        }
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "entries": self._entries}, indent=1))
        except OSError:
            pass


@lru_cache(maxsize=8)
def _cache_for(path: Path) -> FlopsCache:
    return FlopsCache(path)


def default_cache() -> FlopsCache:
    """The process-wide cache backed by ``default_cache_dir() / 'flops.json'``."""
    return _cache_for(default_cache_dir() / "flops.json")


def arch_flops(
    arch: str, num_classes: int, *, full_px: int | None = None, cache: FlopsCache | None = None
) -> FlopsTable:
    """The FLOPs table of a named architecture (``trdcli.run.models``), built on the meta device only if
    the cache lacks a resolution asked for.

    ``full_px``: the run's full size, for a timm model built for it (``build_model``'s ``full_px``); its
    counts are filed under that size too, since a model built for one size may not take another.
    """
    from trdcli.run.models import TIMM_PREFIX, build_model

    key = arch if full_px is None or not arch.startswith(TIMM_PREFIX) else f"{arch}@{full_px}px"
    return FlopsTable(
        key, num_classes, lambda: build_model(arch, num_classes, device="meta", full_px=full_px), cache=cache
    )
