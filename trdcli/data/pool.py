"""The one way trd starts a pool of processes for data work (checking images, preparing a copy)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def clean_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started from a forkserver, not forked from this process.

    ``trd train`` checks its images after CUDA and the process group may be up, and a process
    forked from one that holds a CUDA context is not safe; the forkserver starts clean.
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
