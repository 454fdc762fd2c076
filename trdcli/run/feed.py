"""The feed check: can the loader keep the model fed at each resolution a run uses, and with how many workers?

A reduced step costs the model about a quarter of a full one but costs the loader about as much
(it decodes the same file), so a run that is model-bound at full size can wait for data on its
reduced steps. Before a run, ``trd estimate-cost DATA`` times trd's real training loader (decode,
random-resized crop, flip, resize to the step's size, collate) on a sample of the user's own
training images, in this process (one worker's work), at each resolution the schedule uses. With the
model's rate per device (``--measure``, ``--throughput`` or ``--gpu-flops``), the workers that keep
one device fed at each resolution follow: ``ceil(model images/s / one worker's images/s)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trdcli.core.errors import DataError

DEFAULT_FEED_SAMPLE = 256  # images: about a second a resolution on one core
# trd train's own check, in its first seconds on CUDA: a smaller sample, the model timed briefly.
RUN_FEED_SAMPLE = 128


@dataclass(frozen=True)
class FeedRow:
    px: int
    loader_images_per_s: float  # one worker's
    model_images_per_s: float | None = None  # one device's, when a throughput is known
    workers_needed: int | None = None  # to keep one device fed at this resolution

    def json(self) -> dict:
        return {
            "px": self.px,
            "loader_images_per_s_per_worker": self.loader_images_per_s,
            "model_images_per_s_per_device": self.model_images_per_s,
            "workers_needed_per_device": self.workers_needed,
        }


@dataclass(frozen=True)
class FeedCheck:
    """The loader's rate at each resolution, on a sample of the run's own training images."""

    sample_images: int  # the images each resolution's rate was timed on
    rows: list[FeedRow]  # by resolution, largest first
    workers_available: int  # trd train's default workers per device on this machine
    prepared_dir: Path | None = None  # the fresh trd prepare copy reduced sizes were timed on, if any

    def loader_bound(self) -> list[FeedRow]:
        """Resolutions at which this machine's workers cannot keep one device fed."""
        return [r for r in self.rows if r.workers_needed is not None and r.workers_needed > self.workers_available]

    def json(self) -> dict:
        return {
            "sample_images": self.sample_images,
            "workers_available": self.workers_available,
            "by_px": [row.json() for row in self.rows],
            "loader_bound_px": [row.px for row in self.loader_bound()],
            "prepared_dir": str(self.prepared_dir) if self.prepared_dir is not None else None,
        }


@dataclass(frozen=True)
class LoaderRates:
    """One worker's images per second at each resolution, and how many images each rate was timed on."""

    images_per_s: dict[int, float]
    images_timed: int  # the fewest timed at any resolution (the pass's first batch is left out)


def measure_loader(
    items: Sequence[tuple[Path, int]],
    size_px: int,
    pxs: Sequence[int],
    min_scale: float,
    *,
    sample: int,
    batch: int,
    copies: Sequence | None = None,
) -> LoaderRates:
    """Images per second one worker delivers at each of ``pxs``, timed over a pass of ``sample`` images.

    Timed is what a loader worker does (decode, crop, flip, resize, collate), not the batch transforms
    (to float, ``Normalize``), which training runs after the batch reaches the training process, on its
    device. ``copies``: per item, its ``trd prepare`` copy (trdcli.data.prepare.copies_for), which
    reduced sizes read as ``trd train`` reads them."""
    from fastai.data.core import Pipeline

    from trdcli.data.loaders import CropOptions, image_dataloader

    if sample < 1:
        raise DataError(f"the feed check needs at least 1 image to sample, got {sample}")
    step = max(1, len(items) // sample)
    chosen = list(items)[::step][:sample]
    chosen_copies = list(copies)[::step][:sample] if copies is not None else None
    batch = min(batch, len(chosen))
    if not chosen:
        raise DataError("no training images to time the loader on")
    rates, timed = {}, []
    for px in sorted(set(pxs), reverse=True):
        loader = image_dataloader(
            chosen, size_px, batch, True, workers=0, device=None, crops=CropOptions(min_scale), copies=chosen_copies
        )
        loader.after_batch = Pipeline([])  # the workers never run it: see above
        loader.plan_next_pass([px] * len(loader))
        batches = iter(loader)
        next(batches)  # the first batch pays for opening the pass
        start, images = time.perf_counter(), 0
        for images_batch, _ in batches:
            images += len(images_batch)
        elapsed = time.perf_counter() - start
        if not images:  # one batch in all: time it again, whole
            loader.plan_next_pass([px] * len(loader))
            start = time.perf_counter()
            images = sum(len(x) for x, _ in loader)
            elapsed = time.perf_counter() - start
        rates[px] = images / max(elapsed, 1e-9)
        timed.append(images)
    return LoaderRates(rates, min(timed))


def shortfall_warnings(check: FeedCheck) -> list[str]:
    """One line per resolution at which the run's workers cannot keep one device fed."""
    lines = []
    for row in check.loader_bound():
        supply = row.loader_images_per_s * max(check.workers_available, 1)
        lines.append(
            f"the loader may not keep up at {row.px} px: {check.workers_available} worker(s) deliver about "
            f"{supply:,.0f} images/s, the model trains {row.model_images_per_s:,.0f} (short by "
            f"{1 - supply / row.model_images_per_s:.0%}); {row.workers_needed} workers would keep it fed "
            "(`workers`; `trd prepare` makes reduced steps cheaper to load)"
        )
    return lines


def feed_check(
    loader: LoaderRates,
    model_rates: dict[int, float] | None,
    workers_available: int,
    prepared_dir: Path | None = None,
) -> FeedCheck:
    """The rows of the check: each resolution's loader rate, and with the model's, the workers it needs."""
    rows = []
    for px in sorted(loader.images_per_s, reverse=True):
        rate = loader.images_per_s[px]
        model = model_rates.get(px) if model_rates else None
        needed = math.ceil(model / rate) if model else None
        rows.append(FeedRow(px, rate, model, needed))
    return FeedCheck(loader.images_timed, rows, workers_available, prepared_dir)
