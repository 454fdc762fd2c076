"""What the model trains per second at each resolution: measured on this device, or given.

:func:`measure_throughput` is what ``trd estimate-cost --measure`` and ``trd train``'s feed check time;
:class:`Throughput` is the rate a plan's time and money follow, whatever its source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trdcli.core.cost import ImageFlops


@dataclass(frozen=True)
class Throughput:
    """Training images per second at each resolution, per device, and where the numbers came from."""

    images_per_s: dict[int, float]
    source: str

    def seconds_per_image(self, px: int, flops_at: Callable[[int], ImageFlops]) -> float:
        """Time per image at ``px``; between known resolutions, interpolated linearly in train FLOPs."""
        if px in self.images_per_s:
            return 1.0 / self.images_per_s[px]
        known = sorted(self.images_per_s)
        flops = flops_at(px).train_flops
        points = [(flops_at(k).train_flops, 1.0 / self.images_per_s[k]) for k in known]
        xs, ys = zip(*points, strict=True)
        if flops <= xs[0] or flops >= xs[-1]:
            # Outside the measured range (or a single measurement): scale the nearest point by FLOPs.
            f0, t0 = points[0] if flops <= xs[0] else points[-1]
            return t0 * flops / f0
        return float(np.interp(flops, xs, ys))


def measure_throughput(
    arch: str,
    num_classes: int,
    pxs: list[int],
    batch_size: int,
    device: str | None = None,
    rounds: int = 5,
    min_timing_s: float = 0.5,
) -> Throughput:
    """Time real forward+backward+SGD steps of ``arch`` at each resolution on the local device.

    Each resolution is warmed up once, then timed in ``rounds`` rounds that visit every
    resolution in turn (so a slow moment of the machine hits all of them alike); a timing
    runs enough steps to last ``min_timing_s``. The median per resolution is reported. Data
    loading is not included. On CUDA the steps run as ``trd train`` runs them there: mixed
    precision (float16 autocast) and channels_last.
    """
    import statistics

    import torch

    from trdcli.run.device import device_name, pick_device
    from trdcli.run.models import build_model

    dev = pick_device(device)
    cuda = dev.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    model = build_model(arch, num_classes, full_px=max(pxs)).to(dev, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches, steps_per_timing = {}, {}
    for px in sorted(pxs, reverse=True):
        images = torch.randn(batch_size, 3, px, px, device=dev).contiguous(memory_format=memory_format)
        labels = torch.randint(0, num_classes, (batch_size,), device=dev)
        batches[px] = (images, labels)
        warm_up_s = _timed_steps(model, optimizer, loss_fn, images, labels, 1, dev)
        steps_per_timing[px] = max(1, math.ceil(min_timing_s / max(warm_up_s, 1e-6)))
    rates: dict[int, list[float]] = {px: [] for px in batches}
    for _ in range(rounds):
        for px, (images, labels) in batches.items():
            steps = steps_per_timing[px]
            rates[px].append(steps * batch_size / _timed_steps(model, optimizer, loss_fn, images, labels, steps, dev))
    medians = {px: statistics.median(r) for px, r in rates.items()}
    how = ", mixed precision, channels_last" if cuda else ""
    return Throughput(
        medians, f"measured on {device_name(dev)}, batch {batch_size}{how}, median of {rounds} rounds, model only"
    )


def _timed_steps(model, optimizer, loss_fn, images, labels, steps: int, device) -> float:
    import torch

    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
