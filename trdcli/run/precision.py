"""The numeric precision a run trains in: bf16 or fp16 autocast, or fp32, as asked or by device."""

from __future__ import annotations

import torch
from fastai.callback.fp16 import MixedPrecision
from torch.amp import GradScaler, autocast

from trdcli.core.defaults import PRECISIONS
from trdcli.core.errors import ConfigError


def resolve_precision(asked: str, device: torch.device) -> str:
    """``auto``: bf16 on a CUDA device that has it, fp16 on an older one, fp32 elsewhere; otherwise as asked,
    if the device can."""
    if asked not in PRECISIONS:
        raise ConfigError(f"unknown `precision` {asked!r}: one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if asked == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if asked == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"`precision` bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16")
    if asked == "fp16" and not cuda:
        raise ConfigError(f"`precision` fp16 needs a CUDA device (this run is on {device.type}): use bf16 or fp32")
    return asked


class DeviceMixedPrecision(MixedPrecision):
    """fastai's ``MixedPrecision`` on the device the model is on: fastai's own opens CUDA's autocast
    only, which leaves a CPU (or MPS) run in float32. bf16 needs no loss scaling, so its scaler is off."""

    def before_fit(self):
        bf16 = self.amp_mode.value == "bf16"
        device_type = next(self.learn.model.parameters()).device.type
        dtype = torch.bfloat16 if bf16 else torch.float16
        self.kwargs["enabled"] = not bf16
        self.autocast = autocast(device_type, dtype=dtype)
        self.learn.scaler, self.scales = GradScaler(device_type, **self.kwargs), []


def add_precision(learn, precision: str) -> None:
    """Train ``learn`` in ``precision`` (a resolved one: bf16, fp16 or fp32)."""
    if precision != "fp32":
        learn.add_cb(DeviceMixedPrecision(amp_mode=precision))
