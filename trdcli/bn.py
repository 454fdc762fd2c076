"""BatchNorm recalibration: re-estimate running statistics at the evaluation resolution after training.

Statistics gathered on reduced-resolution steps differ from those at full resolution. Running
a few batches at full resolution through the network in training mode, without gradients,
with the running averages reset and accumulated as a plain mean (``momentum=None``), gives
statistics that match what evaluation sees (as Mix&Match and FixRes do).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from trdcli.errors import require_positive_int


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable, max_batches: int) -> int:
    """Re-estimate every BatchNorm's running mean and variance from up to ``max_batches`` batches.

    ``batches`` yields ``(images, ...)`` tuples at the evaluation resolution. Returns the
    number of images run forward (0 when the model has no BatchNorm).
    """
    require_positive_int("max_batches", max_batches)
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    images = 0
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative mean over the recalibration batches
        model.train()
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, list | tuple) else batch
                model(x)
                images += x.shape[0]
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return images
