"""Write your own resolution schedule: one method answers "which px do these steps of T use".

A cosine ramp from half to full resolution, planned with the cost model, then run in a real
fastai fit on random tensors, where the callback records exactly the planned resolutions.

    python examples/custom_schedule.py
"""

from __future__ import annotations

import math

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat

from trdcli import ResolutionSchedule, RunShape, arch_flops, plan_compute, trd_callbacks
from trdcli.run.models import build_model


class CosineRamp(ResolutionSchedule):
    """Half resolution at the start, full at the end, a cosine in between, in multiples of 8 px."""

    name = "cosine-ramp"

    def sizes_px(self, steps, total_steps, full_px, steps_per_epoch=None):
        # steps: an int64 array of step indices; the per-step answer (resolution_px) and the
        # cost model's plan both come from here.
        progress = steps / total_steps
        scale = 0.5 + 0.5 * (1 - np.cos(math.pi * progress)) / 2
        return np.clip(np.round(full_px * scale / 8).astype(np.int64) * 8, self.min_px, full_px)

    def params(self):
        return {"start_scale": 0.5, "multiple": 8}


def main() -> None:
    schedule = CosineRamp()
    flops = arch_flops("resnet50", 1000)
    imagenet = RunShape(train_images=1_281_167, batch_size=256, epochs=90, full_px=224)
    fraction = plan_compute(schedule, imagenet, flops.at).compute_fraction
    print(f"ResNet-50, ImageNet, 90 epochs: {fraction:.1%} of the baseline")

    generator = torch.Generator().manual_seed(0)
    items = [
        (torch.randn(3, 64, 64, generator=generator), int(torch.randint(0, 3, (1,), generator=generator)))
        for _ in range(48)
    ]
    dls = DataLoaders.from_dsets(items[:40], items[40:], bs=8, drop_last=True)
    cbs = trd_callbacks(schedule=schedule)
    learn = Learner(dls, build_model("resnet18", 3), loss_func=CrossEntropyLossFlat(), cbs=cbs)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2)
    planned = schedule.plan_px(10, 64).tolist()
    print("planned:", planned)
    ran = [r.px for r in learn.compute_meter.records]
    print("ran:    ", ran)
    assert ran == planned


if __name__ == "__main__":
    main()
