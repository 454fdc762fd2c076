"""trd: Temporally Resolution Decrement for fastai, with an honest account of the compute it saves.

Public API (imported lazily, so ``trd --help`` does not pay for importing torch and fastai)::

    from trdcli import TRDCallback, TRDSchedule, resize_batch, get_preset
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TRDCallback": "trdcli.callback",
    "StepRecord": "trdcli.callback",
    "ResolutionSchedule": "trdcli.schedules",
    "TRDSchedule": "trdcli.schedules",
    "ConstantSchedule": "trdcli.schedules",
    "ComposerSchedule": "trdcli.schedules",
    "FFCVSchedule": "trdcli.schedules",
    "StagedSchedule": "trdcli.schedules",
    "resize_batch": "trdcli.resize",
    "ImageFlops": "trdcli.cost",
    "FlopsTable": "trdcli.cost",
    "RunShape": "trdcli.cost",
    "ComputeSummary": "trdcli.cost",
    "count_image_flops": "trdcli.cost",
    "plan_compute": "trdcli.cost",
    "summarize_compute": "trdcli.cost",
    "get_preset": "trdcli.presets",
    "PRESETS": "trdcli.presets",
    "StageRegularisation": "trdcli.regularisation",
    "recalibrate_batchnorm": "trdcli.bn",
    "OneCycle": "trdcli.lr_schedule",
    "lr_scheduler": "trdcli.train_callbacks",
    "load_model": "trdcli.rundir",
    "TRDError": "trdcli.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from trdcli.bn import recalibrate_batchnorm
    from trdcli.callback import StepRecord, TRDCallback
    from trdcli.cost import (
        ComputeSummary,
        FlopsTable,
        ImageFlops,
        RunShape,
        count_image_flops,
        plan_compute,
        summarize_compute,
    )
    from trdcli.errors import TRDError
    from trdcli.lr_schedule import OneCycle
    from trdcli.presets import PRESETS, get_preset
    from trdcli.regularisation import StageRegularisation
    from trdcli.resize import resize_batch
    from trdcli.rundir import load_model
    from trdcli.schedules import (
        ComposerSchedule,
        ConstantSchedule,
        FFCVSchedule,
        ResolutionSchedule,
        StagedSchedule,
        TRDSchedule,
    )
    from trdcli.train_callbacks import lr_scheduler


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trdcli' has no attribute {name!r}")
