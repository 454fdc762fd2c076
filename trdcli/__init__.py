"""trd: Temporally Resolution Decrement for fastai, with an honest account of the compute it saves.

Public API (imported lazily, so ``trd --help`` does not pay for importing torch and fastai)::

    from trdcli import trd_callbacks, TRDSchedule, resize_batch, get_preset

The package's folders are its layers (docs/architecture.md): ``core`` (the method, pure),
``callbacks`` (fastai), ``data``, ``run``, ``plan``, ``evaluate`` and ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TRDCallback": "trdcli.callbacks.trd",
    "trd_callbacks": "trdcli.callbacks.trd",
    "ComputeMeter": "trdcli.callbacks.meter",
    "StepRecord": "trdcli.core.cost",
    "ResolutionSchedule": "trdcli.core.schedules",
    "TRDSchedule": "trdcli.core.schedules",
    "ConstantSchedule": "trdcli.core.schedules",
    "ComposerSchedule": "trdcli.core.schedules",
    "FFCVSchedule": "trdcli.core.schedules",
    "StagedSchedule": "trdcli.core.schedules",
    "resize_batch": "trdcli.core.resize",
    "ImageFlops": "trdcli.core.cost",
    "FlopsTable": "trdcli.core.cost",
    "RunShape": "trdcli.core.cost",
    "ComputeSummary": "trdcli.core.cost",
    "count_image_flops": "trdcli.core.cost",
    "plan_compute": "trdcli.core.cost",
    "summarize_compute": "trdcli.core.cost",
    "get_preset": "trdcli.core.presets",
    "PRESETS": "trdcli.core.presets",
    "StageRegularisation": "trdcli.callbacks.regularisation",
    "recalibrate_batchnorm": "trdcli.callbacks.batchnorm",
    "RecalibrateBatchNorm": "trdcli.callbacks.batchnorm",
    "PrivateBatchNormCallback": "trdcli.callbacks.batchnorm",
    "OneCycle": "trdcli.core.lr_schedule",
    "Recipe": "trdcli.core.recipes",
    "RECIPES": "trdcli.core.recipes",
    "EMAWeights": "trdcli.callbacks.ema",
    "lr_scheduler": "trdcli.run.callbacks",
    "load_model": "trdcli.run.rundir",
    "TRDError": "trdcli.core.errors",
    "arch_flops": "trdcli.run.flops_cache",
    "TRDTracker": "trdcli.trackers.callback",
    "TensorBoardTracker": "trdcli.trackers.tensorboard_tracker",
    "Tracker": "trdcli.trackers.interface",
    "WandbTracker": "trdcli.trackers.wandb_tracker",
    "MlflowTracker": "trdcli.trackers.mlflow_tracker",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from trdcli.callbacks.batchnorm import PrivateBatchNormCallback, RecalibrateBatchNorm, recalibrate_batchnorm
    from trdcli.callbacks.ema import EMAWeights
    from trdcli.callbacks.meter import ComputeMeter
    from trdcli.callbacks.regularisation import StageRegularisation
    from trdcli.callbacks.trd import TRDCallback, trd_callbacks
    from trdcli.core.cost import (
        ComputeSummary,
        FlopsTable,
        ImageFlops,
        RunShape,
        StepRecord,
        count_image_flops,
        plan_compute,
        summarize_compute,
    )
    from trdcli.core.errors import TRDError
    from trdcli.core.lr_schedule import OneCycle
    from trdcli.core.presets import PRESETS, get_preset
    from trdcli.core.recipes import RECIPES, Recipe
    from trdcli.core.resize import resize_batch
    from trdcli.core.schedules import (
        ComposerSchedule,
        ConstantSchedule,
        FFCVSchedule,
        ResolutionSchedule,
        StagedSchedule,
        TRDSchedule,
    )
    from trdcli.run.callbacks import lr_scheduler
    from trdcli.run.flops_cache import arch_flops
    from trdcli.run.rundir import load_model
    from trdcli.trackers.callback import TRDTracker
    from trdcli.trackers.interface import Tracker
    from trdcli.trackers.mlflow_tracker import MlflowTracker
    from trdcli.trackers.tensorboard_tracker import TensorBoardTracker
    from trdcli.trackers.wandb_tracker import WandbTracker


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trdcli' has no attribute {name!r}")
