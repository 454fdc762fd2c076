"""What clusters do to long runs: SIGTERM before preemption. Turned into the same clean stop as Ctrl-C.

SLURM, Kubernetes and cloud schedulers send SIGTERM, then SIGKILL after a grace period. By
default Python dies on SIGTERM at once, losing the epoch in progress and any message. Within
:func:`sigterm_interrupts` a SIGTERM is only noted; the training loop checks after every step
(under a launcher the ranks agree every few steps: :class:`~trdcli.run.callbacks.StopOnSigterm`) and
raises :class:`Preempted` (a
``KeyboardInterrupt``) there, so the run stops the way Ctrl-C stops it: the last complete
epoch is saved, and the caller says how to resume.

Why not raise in the handler itself: a signal handler runs wherever the main thread happens
to be, and an exception raised in an at-fork hook, a ``__del__`` or a ``finally`` is printed
and swallowed (seen when a DataLoader forked its workers), so the run went on regardless.
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
    """Within the block, SIGTERM is recorded in the yielded list instead of ending the process.

    A no-op outside the main thread, where Python cannot install signal handlers. The list
    tells the training loop to stop, and a caller that an error raised meanwhile (a
    DataLoader worker the same SIGTERM killed first) is part of the same preemption.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
