"""Where training time goes: how long the loop waited for its data, per resolution.

A reduced step trains several times as many images per second as a full one, so a loader
that keeps up with full steps can starve reduced ones, and then compute saved is not time
saved. :class:`SizedBatchesDL <trdcli.data.sized_loader.SizedBatchesDL>` times every batch the
training loop waits for; :class:`~trdcli.run.callbacks.DataWaitTimer` pairs those waits
with the steps' sizes and times each epoch's training phase. An epoch's figures go into its history row
(:func:`epoch_columns`), and the run's are summed from the rows (:func:`summarize`), so a
resumed run counts its earlier epochs too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The default for "this run is loader-bound": the training loop waited longer than this
# share of its training time for data.
DEFAULT_MAX_DATA_WAIT_FRAC = 0.1


@dataclass
class DataWait:
    """Seconds of training time and of waiting for data, in total and by step resolution."""

    train_s: float = 0.0  # the training phases' wall time (validation not included)
    wait_s_by_px: dict[int, float] = field(default_factory=dict)
    train_s_by_px: dict[int, float] = field(default_factory=dict)  # waiting plus stepping

    @property
    def wait_s(self) -> float:
        return sum(self.wait_s_by_px.values())

    @property
    def wait_frac(self) -> float:
        """Share of the training time spent waiting for data."""
        return self.wait_s / self.train_s if self.train_s > 0 else 0.0

    def wait_frac_at(self, px: int) -> float:
        """Share of the time of steps at ``px`` spent waiting for their data."""
        total_s = self.train_s_by_px.get(px, 0.0)
        return self.wait_s_by_px.get(px, 0.0) / total_s if total_s > 0 else 0.0

    def json(self) -> dict[str, Any]:
        """The ``data_wait`` object of ``run.json``."""
        return {
            "wait_s": self.wait_s,
            "train_s": self.train_s,
            "wait_frac": self.wait_frac,
            "by_px": {
                str(px): {
                    "wait_s": self.wait_s_by_px[px],
                    "train_s": self.train_s_by_px[px],
                    "wait_frac": self.wait_frac_at(px),
                }
                for px in sorted(self.wait_s_by_px, reverse=True)
            },
        }


def measure_epoch(train_s: float, step_px: Sequence[int], wait_s: Sequence[float], step_s: Sequence[float]) -> DataWait:
    """One training phase's :class:`DataWait` from its steps' sizes, waits and step times."""
    out = DataWait(train_s=train_s)
    for px, wait, step in zip(step_px, wait_s, step_s, strict=True):
        out.wait_s_by_px[px] = out.wait_s_by_px.get(px, 0.0) + wait
        out.train_s_by_px[px] = out.train_s_by_px.get(px, 0.0) + wait + step
    return out


def epoch_columns(epoch: DataWait) -> dict[str, Any]:
    """An epoch's history columns: training seconds, seconds waiting for data, and both by resolution."""
    return {
        "train_s": epoch.train_s,
        "data_wait_s": epoch.wait_s,
        "data_wait_frac": epoch.wait_frac,
        "data_wait_s_by_px": {str(px): s for px, s in sorted(epoch.wait_s_by_px.items(), reverse=True)},
        "train_s_by_px": {str(px): s for px, s in sorted(epoch.train_s_by_px.items(), reverse=True)},
    }


def summarize(history: Iterable[dict[str, Any]]) -> DataWait | None:
    """The run's :class:`DataWait`, summed over the history rows that have one; None if none has."""
    rows = [row for row in history if "data_wait_s_by_px" in row]
    if not rows:
        return None
    out = DataWait(train_s=sum(row["train_s"] for row in rows))
    for row in rows:
        for key, target in (("data_wait_s_by_px", out.wait_s_by_px), ("train_s_by_px", out.train_s_by_px)):
            for px, seconds in row[key].items():
                target[int(px)] = target.get(int(px), 0.0) + seconds
    return out
