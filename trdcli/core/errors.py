"""The errors trd raises for what a user gave it, and the one-line form they are shown in.

Everything derived from :class:`TRDError` is the user's to fix (a value, a folder, a run
directory): a front end shows it as one line. Anything else that escapes is a bug in trd
and keeps its traceback. Messages name a setting by its Python name in backquotes
(`` `low_res` ``), so a front end can put its own name for it in place (the CLI's ``--low-res``)
without guessing which words of the prose are settings.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SETTING = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


class TRDError(Exception):
    """Input trd cannot use, said in one line; settings it names are in backquotes."""

    def rendered(self, names: Mapping[str, str]) -> str:
        """The message with each `setting` renamed through ``names`` (e.g. to CLI flags), backquotes dropped."""
        return _SETTING.sub(lambda m: names.get(m.group(1), m.group(1)), one_line(self))


class ConfigError(TRDError, ValueError):
    """A setting has a value trd cannot use. Also a ``ValueError``, as Python callers expect."""


class UnknownArchError(ConfigError):
    """The architecture named is not one trd can build."""


class DataError(TRDError, ValueError):
    """The data folder cannot be used as given; the message says what and where."""


class RunDirError(TRDError):
    """A run directory cannot be created, read, resumed or written."""


class OtherRankFailed(TRDError):
    """Another process of a distributed run stopped on an internal error: its traceback is in its own output."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM during training; the last completed epoch is saved in ``run_dir`` to resume from."""

    def __init__(self, run_dir: Path, epochs_done: int, saved: bool, signal_name: str = "SIGINT"):
        self.run_dir = run_dir
        self.epochs_done = epochs_done
        self.saved = saved
        self.signal_name = signal_name  # SIGINT (Ctrl-C) or SIGTERM (how schedulers preempt a job)
        super().__init__(f"interrupted by {signal_name} after {epochs_done} complete epoch(s)")


class TrainingDiverged(TRDError):
    """The loss became NaN or infinite; the message names where and what is saved to resume from."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line, unwrapping a DataLoader worker's re-raised error."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and len(lines) > 1:
        # torch re-raises a worker's exception with the worker's traceback; the cause is last.
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_positive_int(setting: str, value: Any) -> int:
    """``value`` as an int, or a :class:`ConfigError` naming ``setting`` and the value."""
    if not is_int(value) or value < 1:
        raise ConfigError(f"`{setting}` must be a positive integer, got {value!r}")
    return int(value)


def named(settings) -> list[str]:
    """Setting names, each marked as one for :meth:`TRDError.rendered`."""
    return [f"`{name}`" for name in settings]
