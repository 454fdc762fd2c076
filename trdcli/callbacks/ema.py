"""An exponential moving average of the weights (EMA), as timm's and Composer's users expect.

torch's own ``AveragedModel`` with ``get_ema_multi_avg_fn`` keeps it, updated after every optimizer
step; ``use_buffers=True`` averages BatchNorm's running statistics too, which TRD's reduced steps have
moved, so when trd recalibrates the model's BatchNorm after a fit it recalibrates the EMA's on the same
number of full-resolution batches. The EMA's own cost (an average per step, the recalibration's
forward passes) is not part of the compute figures (docs/method.md).
"""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from trdcli.callbacks.batchnorm import finding_lr
from trdcli.core.defaults import check_ema_decay


class EMAWeights(Callback):
    """``learn.ema.model``: the average of the weights after each optimizer step, with weight ``1 - decay``
    for the newest. Reachable as ``learn.ema``; ``lr_find`` runs are left alone."""

    order = -3  # after_fit after RecalibrateBatchNorm (-4), whose batch count it reuses
    run_valid = False

    def __init__(self, decay: float):
        super().__init__()
        check_ema_decay(decay)
        self.decay = decay
        self.averaged: AveragedModel | None = None

    @property
    def name(self) -> str:
        return "ema"

    @property
    def model(self) -> torch.nn.Module:
        """The averaged network itself (the architecture's own module, not the wrapper)."""
        return self._averaged().module

    def _averaged(self) -> AveragedModel:
        if self.averaged is None:
            source = getattr(self.learn.model, "module", self.learn.model)  # unwrapped from DDP
            self.averaged = AveragedModel(source, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
            # A model compiled in place (--compile) would have its copy call the original's compiled forward.
            self.averaged.module._compiled_call_impl = None
        return self.averaged

    def after_step(self):
        if not finding_lr(self.learn):
            self._averaged().update_parameters(getattr(self.learn.model, "module", self.learn.model))

    def after_fit(self):
        # Whether this fit trained (learn.validate() sends after_fit too) is RecalibrateBatchNorm's to know.
        recalibrate = getattr(self.learn, "recalibrate_bn", None)
        if recalibrate is None or not recalibrate.trained_this_fit or finding_lr(self.learn):
            return
        batches = recalibrate.batches_after_fit()
        if batches:
            recalibrate.recalibrate(self.model, batches)

    def state_dict(self) -> dict:
        return self._averaged().state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._averaged().load_state_dict(state)
