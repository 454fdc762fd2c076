"""What clusters do to long runs: SIGTERM before preemption. Turned into the same clean stop as Ctrl-C.

SLURM, Kubernetes and cloud schedulers send SIGTERM, then SIGKILL after a grace period. By
default Python dies on SIGTERM at once, losing the epoch in progress and any message;
:func:`sigterm_interrupts` makes it raise :class:`Preempted` (a ``KeyboardInterrupt``) in the
training loop instead, so the run stops the way Ctrl-C stops it: the last complete epoch is
saved, and the caller says how to resume.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Preempted(KeyboardInterrupt):
    """SIGTERM arrived during training."""


@contextmanager
def sigterm_interrupts() -> Iterator[list[int]]:
    """Within the block, SIGTERM raises :class:`Preempted`; yields the list of signals received.

    A no-op outside the main thread, where Python cannot install signal handlers. The list
    tells a caller that an error raised meanwhile (a DataLoader worker the same SIGTERM
    killed first) is part of the same preemption.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:  # raise once: a second SIGTERM must not interrupt the cleanup
            raise Preempted

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
