"""``SizedBatchesDL``: a fastai training DataLoader that delivers each batch at the size it is told.

A resolution schedule is a pure function of the step, so the size of every batch of an
epoch is known before the epoch starts. ``TRDCallback`` hands the loader that plan
(:meth:`SizedBatchesDL.plan_next_pass`) before each training epoch; the loader pairs every
index with its batch's size, in the main process and after shuffling, so the pairs reach
the workers with the indices whatever their number, and the dataset delivers each item at
that size (``dataset[i, px]``). A plan is used by exactly one pass: ``lr_find``, BatchNorm
recalibration, ``show_batch`` and a pass after an interrupted epoch get full size.

Its shuffle can be a pure function of ``(seed, epoch)`` (:meth:`SizedBatchesDL.seed_next_pass`,
as ``DistributedSampler.set_epoch`` does for torch): a resumed run then sees, in the epoch it
resumes at, the order the uninterrupted run would have, not the first epoch's again.

It also times how long its consumer waits for each batch (``batch_wait_s``): the time
spent inside ``next()``, which is what the training loop loses to data loading.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
from fastai.data.core import TfmdDL


def sized_indices(idxs: Sequence, batch_size: int, batch_px: Sequence[int]) -> list[tuple[int, int]]:
    """``(index, px)`` for the items of the batches ``batch_px`` sizes, batch ``k`` at ``batch_px[k]``.

    Items past the last planned batch (the partial batch a ``drop_last`` loader drops) are
    left out, so nothing is decoded only to be thrown away.
    """
    return [(idx, batch_px[k // batch_size]) for k, idx in enumerate(idxs[: len(batch_px) * batch_size])]


def shard_indices(idxs: Sequence, batch_size: int, rank: int, world_size: int) -> list:
    """Rank ``rank``'s part of every whole global batch of ``batch_size * world_size`` items, in order.

    Every rank shuffles the same way (fastai's loader draws from its own generator, seeded
    alike on every rank), so global batch ``k`` is the same on all of them and each rank takes
    the ``rank``-th slice of it: shards are disjoint, equally long, and local batch ``k`` is
    global step ``k`` on every rank. The partial global batch at the end is dropped.
    """
    global_batch = batch_size * world_size
    whole = len(idxs) // global_batch
    return [
        idx
        for k in range(whole)
        for idx in idxs[k * global_batch + rank * batch_size : k * global_batch + (rank + 1) * batch_size]
    ]


class SizedBatchesDL(TfmdDL):
    """A training ``TfmdDL`` over :class:`~trdcli.data.loaders.ImageItems` whose batches can each have a size."""

    def __init__(self, dataset=None, rank: int = 0, world_size: int = 1, **kwargs):
        super().__init__(dataset, **kwargs)
        self._next_px: list[int] | None = None
        self._next_seed: tuple[int, int] | None = None  # (seed, epoch) of the next pass's shuffle
        self.batch_wait_s: list[float] = []  # of the current or last pass, one per batch delivered
        # In a distributed run each rank's loader holds its own share of every global batch:
        # ``bs`` is the per-rank batch. fastai's DistributedDL does not wrap it.
        self.rank, self.world_size = rank, world_size
        if world_size > 1 and not self.drop_last:
            raise ValueError("a sharded training loader drops the last partial batch (drop_last=True)")

    def __len__(self) -> int:
        if self.world_size == 1:
            return super().__len__()
        return self.n // (self.bs * self.world_size)  # whole global batches: the same on every rank

    @property
    def full_px(self) -> int:
        """The size of a batch nobody planned."""
        return self.dataset.size_px

    def plan_next_pass(self, batch_px: Sequence[int]) -> None:
        """Sizes in px of the batches of the next pass over the data, one per batch."""
        if len(batch_px) != len(self):
            raise ValueError(f"a plan for {len(batch_px)} batches given to a loader of {len(self)} batches")
        self._next_px = [int(px) for px in batch_px]

    def seed_next_pass(self, seed: int, epoch: int) -> None:
        """Shuffle the next pass by ``(seed, epoch)`` alone: the same order in any process, in a fresh
        loader after a resume, and on every rank."""
        self._next_seed = (int(seed), int(epoch))

    def shuffle_fn(self, idxs):
        seeded, self._next_seed = self._next_seed, None
        if seeded is None:
            return super().shuffle_fn(idxs)
        order = np.random.default_rng(seeded).permutation(len(idxs))
        return [idxs[i] for i in order]

    def get_idxs(self):
        # Runs in the main process when a pass starts, before fastai starts its workers.
        idxs = super().get_idxs()
        if self.world_size > 1:
            idxs = shard_indices(idxs, self.bs, self.rank, self.world_size)
        batch_px, self._next_px = self._next_px, None
        return idxs if batch_px is None else sized_indices(idxs, self.bs, batch_px)

    def __iter__(self) -> Iterator:
        self.batch_wait_s = []
        batches = super().__iter__()
        try:
            while True:
                started_s = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    return
                self.batch_wait_s.append(time.perf_counter() - started_s)
                yield batch
        finally:
            batches.close()  # an abandoned pass (cancelled epoch, Ctrl-C) stops its workers now
