"""Which device a run uses, how it is named in results, and the versions a result was made with."""

from __future__ import annotations

import os
import platform

from trdcli.core.errors import ConfigError


def pick_device(requested: str | None, local_rank: int = 0, distributed: bool = False):
    """``requested`` as a ``torch.device``, or the best available: cuda, then mps, then cpu.

    In a distributed run, CUDA means this process's own GPU, ``cuda:<local_rank>``; a GPU named by
    index is refused there (it would put several processes on one GPU): the launcher's processes
    are mapped onto the GPUs that ``CUDA_VISIBLE_DEVICES`` shows.
    """
    import torch

    if distributed and requested and requested.strip().lower().startswith("cuda:"):
        raise ConfigError(
            f"`device` {requested} under a launcher: each process uses cuda:<its local rank>; give `device` cuda "
            "and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    device = _named_device(requested)
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


DEVICE_TYPES = ("cpu", "cuda", "mps")


def _named_device(requested: str | None):
    import torch

    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            device = None
        if device is None or device.type not in DEVICE_TYPES:  # torch's own message lists every backend it knows
            raise ConfigError(f"`device` {requested!r} is not a device trd trains on: give cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"`device` {requested}: CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"`device` {requested}: MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return str(device)


def available_memory_bytes(device) -> int | None:
    """Memory a run could still allocate on ``device``, or None where trd cannot tell."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:  # Linux: what the kernel could hand out now, page cache included
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    import fastai
    import torch
    import torchvision

    from trdcli import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "fastai": fastai.__version__,
        "trd": __version__,
    }
