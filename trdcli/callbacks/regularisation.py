"""Regularisation that a schedule raises stage by stage (EfficientNetV2's progressive learning).

EfficientNetV2 (Tan & Le 2021, arXiv 2104.00298) trains small images with weak regularisation
and large images with strong: dropout and mixup rise with the resolution. A schedule that says
so answers :meth:`~trdcli.core.schedules.ResolutionSchedule.regularisation`; this callback applies
the answer per step. Mixup is fastai's own (:class:`fastai.callback.mixup.MixHandler`: the same
blended loss and restore hooks), with the strength read from the schedule instead of fixed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from fastai.callback.mixup import MixHandler

from trdcli.callbacks.batchnorm import finding_lr
from trdcli.callbacks.meter import fit_step
from trdcli.core.schedules import ResolutionSchedule, step_uniforms


class StageRegularisation(MixHandler):
    """Dropout and mixup strengths per step, as ``schedule.regularisation`` gives them.

    Runs after :class:`~trdcli.callbacks.trd.TRDCallback` (order -5), so mixup blends the batch at
    the resolution it trains at. Mixing draws are a pure function of the run's ``(seed, step)``, like
    the schedule's, so a rerun or a resumed run mixes the same way. Dropout rates are
    restored when the fit ends or is cancelled.
    """

    order = -4
    applies_regularisation = True  # what TRDCallback looks for before warning that nothing applies them

    def __init__(self, schedule: ResolutionSchedule, seed: int = 0):
        super().__init__(alpha=1.0)  # the Beta distribution is drawn per step from the schedule's alpha
        self.schedule = schedule
        self.seed = int(seed)  # the run's: staged schedules have no draws, hence no seed, of their own
        self._dropout_p: dict[nn.Module, float] = {}
        self._active = True

    def before_train(self):
        # lr_find probes the plain model, as TRDCallback leaves its batches at full resolution.
        self._active = not finding_lr(self.learn)
        if not self._dropout_p:
            self._dropout_p = {
                m: m.p for m in self.learn.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)
            }
        super().before_train()

    def before_batch(self):
        step, total_steps = fit_step(self.learn)
        strengths = self.schedule.regularisation(step, total_steps, self.learn.n_iter) if self._active else {}
        if "dropout" in strengths:
            for module in self._dropout_p:
                module.p = strengths["dropout"]
        images, n = self.learn.xb[0], self.learn.yb[0].shape[0]
        alpha = strengths.get("mixup_alpha", 0.0)
        if not self._active or alpha <= 0 or not self.stack_y or len(self.learn.yb) != 1:
            # Weight 1 on the batch's own targets: the blended loss is exactly the plain loss.
            self.lam, self.yb1 = torch.ones(n, device=images.device, dtype=images.dtype), self.learn.yb
            return
        rng = np.random.default_rng(int(step_uniforms(self.seed, step)[0] * 2**62))
        lam = rng.beta(alpha, alpha, size=n)
        # fastai's convention: the batch's own image keeps the larger weight.
        self.lam = torch.from_numpy(np.maximum(lam, 1 - lam)).to(images.device, images.dtype)
        perm = torch.from_numpy(rng.permutation(n)).to(images.device)
        self.yb1 = (self.learn.yb[0][perm],)
        mixed = torch.lerp(images[perm], images, self.lam.view(n, *([1] * (images.dim() - 1))))
        self.learn.xb = (mixed, *self.learn.xb[1:])

    def after_fit(self):
        self._restore_dropout()

    def after_cancel_fit(self):
        super().after_cancel_fit()
        self._restore_dropout()

    def _restore_dropout(self):
        for module, p in self._dropout_p.items():
            module.p = p
        self._dropout_p = {}
