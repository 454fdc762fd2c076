"""``--compile``: the model compiled once, in place, with one static graph per (size, mode) the run uses.

TRD trains at two sizes (a ramp at up to eight) and validation runs in eval mode (its last, partial
batch has another shape): each is a graph of its own under ``dynamic=False``; BatchNorm recalibration
runs eagerly. torch keeps at most ``cache_size_limit`` (8) graphs per code
object and falls back to eager past it, silently; the schedule's sizes are known before the run, so the
limit is raised to what the plan needs. ``Module.compile`` compiles in place: the state dict keeps the
module's own names (no ``_orig_mod.`` prefix), so checkpoints and ``model.pth`` load into an uncompiled
model.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field

from trdcli.core.errors import ConfigError

# Shapes beyond the plan's: one spare for a last partial training batch where a loader keeps it.
_SPARE_GRAPHS = 1


def planned_graphs(train_pxs: list[int], full_px: int) -> list[str]:
    """One name per graph the run compiles: training at each size, and validation (its full batches and
    its last partial one) at full size. BatchNorm recalibration runs eagerly (a few batches)."""
    graphs = [f"train {px} px" for px in sorted(train_pxs, reverse=True)]
    return graphs + [f"validation {full_px} px", f"validation {full_px} px, last batch"]


def check_can_compile(backend: str, device_type: str) -> None:
    """Inductor needs a C++ compiler for the CPU and triton for CUDA: one line, not a traceback mid-run."""
    if backend != "inductor":
        return
    if device_type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError("`compile` with inductor on the CPU needs a C++ compiler (g++ or clang++): none found")
    if device_type == "cuda" and importlib.util.find_spec("triton") is None:
        raise ConfigError("`compile` with inductor on CUDA needs triton, which is not installed")


@dataclass
class CompileRecord:
    """What compiling cost the run: graphs compiled against the plan, and why each cached graph was passed over."""

    backend: str
    planned: list[str]
    cache_size_limit: int
    graphs: int = 0
    guard_failures: list[str] = field(default_factory=list)
    _graphs_before: int = 0
    _reasons_before: int = 0

    def json(self) -> dict:
        return {
            "backend": self.backend,
            "planned_graphs": self.planned,
            "graphs": self.graphs,
            # Each compile after the first is a recompile; each lists why every graph already cached did not
            # fit (torch's guard_failures): a new size, grad mode off for validation, a last partial batch.
            "recompiles": max(0, self.graphs - 1),
            "guard_failures": self.guard_failures,
            "cache_size_limit": self.cache_size_limit,
        }


def _counts() -> tuple[int, list[str]]:
    from torch._dynamo.utils import counters, guard_failures

    reasons = [str(reason) for failures in guard_failures.values() for reason in failures]
    return int(counters["stats"]["unique_graphs"]), reasons


def compile_model(model, backend: str, planned: list[str]) -> CompileRecord:
    """Compile ``model`` in place (static shapes), with the graph cache raised to hold the plan's graphs."""
    import torch._dynamo

    config = torch._dynamo.config
    limit = max(config.cache_size_limit, len(planned) + _SPARE_GRAPHS)
    config.cache_size_limit = limit
    if hasattr(config, "accumulated_cache_size_limit"):
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, limit)
    graphs, reasons = _counts()
    model.compile(dynamic=False, backend=backend)
    return CompileRecord(backend, planned, limit, _graphs_before=graphs, _reasons_before=len(reasons))


def finish_record(record: CompileRecord) -> CompileRecord:
    """The graphs and guard failures since :func:`compile_model` (torch's own process-wide counters)."""
    graphs, reasons = _counts()
    record.graphs = graphs - record._graphs_before
    record.guard_failures = reasons[record._reasons_before :]
    return record
