"""Named resolution schedules: TRD's readings and the progressive-resizing schedules users already know.

Each preset is a documented schedule with its source (docs/presets.md). All of them are
:class:`~trdcli.core.schedules.ResolutionSchedule` objects, so the callback, the cost model and
both commands take any of them, and compare them fairly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trdcli.core.errors import ConfigError, named
from trdcli.core.schedules import (
    ComposerSchedule,
    ConstantSchedule,
    FFCVSchedule,
    ResolutionSchedule,
    StagedSchedule,
    TRDSchedule,
)

# The TRD options a preset built on TRDSchedule lets the command line override.
_TRD_OPTIONS = ("low_res", "until", "prob", "prob_end")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    source: str
    build: Callable[..., ResolutionSchedule]
    options: tuple[str, ...] = ()  # command-line options that override its parameters

    def schedule(self, **overrides: Any) -> ResolutionSchedule:
        return self.build(**overrides)


def _trd(name: str, low_scale: float, until: float, prob: float) -> Callable[..., ResolutionSchedule]:
    def build(low_res: int | None = None, until: float = until, prob: float = prob, seed: int = 0, prob_end=None):
        scale = None if low_res is not None else low_scale
        return TRDSchedule(low_res, until=until, prob=prob, seed=seed, low_scale=scale, prob_end=prob_end, name=name)

    return build


def _fixed(factory: Callable[[], ResolutionSchedule]) -> Callable[..., ResolutionSchedule]:
    def build(seed: int = 0, **fixed_params):
        return factory(**fixed_params)

    return build


def _ffcv(low_res: int | None = None, seed: int = 0, **params):
    return FFCVSchedule(low_res, low_scale=None if low_res is not None else 160 / 224, **params)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "trd-window",
            "TRD, window reading: half resolution for the first 90% of steps, then full",
            "Xie et al. 2021, arXiv:2112.00954 ('112x112 within 90% epochs'); docs/method.md",
            _trd("trd-window", 0.5, 0.9, 1.0),
            _TRD_OPTIONS,
        ),
        Preset(
            "trd-alternate",
            "TRD, alternate training: inside the first 90%, each step at half resolution with probability 0.5",
            "Xie et al. 2021, arXiv:2112.00954 ('alternate training'); docs/method.md",
            _trd("trd-alternate", 0.5, 0.9, 0.5),
            _TRD_OPTIONS,
        ),
        Preset(
            "trd-spread",
            "TRD, spread reading: 90% of steps at half resolution, chosen at random over the whole run",
            "Xie et al. 2021, arXiv:2112.00954 (the other reading of 'within 90% epochs'); docs/method.md",
            _trd("trd-spread", 0.5, 1.0, 0.9),
            _TRD_OPTIONS,
        ),
        Preset(
            "trd-half",
            "TRD, the paper's 50% setting: half resolution for the first half of the steps (its best top-1)",
            "Xie et al. 2021, arXiv:2112.00954 ('within 50% epochs': 78.18% top-1 for ResNet-50)",
            _trd("trd-half", 0.5, 0.5, 1.0),
            _TRD_OPTIONS,
        ),
        Preset(
            "composer",
            "Composer ProgressiveResizing defaults: 0.5 scale to 50%, linear ramp to full at 80%, multiples of 4",
            "mosaicml/composer, composer/algorithms/progressive_resizing/progressive_resizing.py",
            _fixed(ComposerSchedule),
            ("initial_scale",),
        ),
        Preset(
            "ffcv",
            "FFCV ImageNet ramp: 160/224 of full until 74% of epochs, per-epoch ramp to full at 86%, multiples of 32",
            "libffcv/ffcv-imagenet, train_imagenet.py get_resolution; rn50_88_epochs.yaml (160->192 px, epochs 65-76)",
            _ffcv,
            ("low_res",),
        ),
        Preset(
            "fastbook",
            "fastai book progressive resizing: 128/224 of full for 4 of 10 epochs, then full",
            "fastai/fastbook 07_sizing_and_tta.ipynb: fit_one_cycle(4) at 128, then fine_tune(5) at 224",
            _trd("fastbook", 128 / 224, 0.4, 1.0),
            _TRD_OPTIONS,
        ),
        Preset(
            "efficientnetv2",
            "EfficientNetV2 progressive learning: 4 stages rising to full, dropout 0.1->0.4, mixup alpha 0->0.2",
            "Tan & Le 2021, arXiv:2104.00298, Table 6 (V2-M); google/automl efficientnetv2/main.py stages",
            _fixed(StagedSchedule),
        ),
        Preset(
            "fixres",
            "FixRes: train at 128/224 of full for 75% of the run, finish at full resolution",
            "Touvron et al. 2019, arXiv:1906.06423 (train 128, test 224); keras-io FixRes example (30 + 10 epochs)",
            _trd("fixres", 128 / 224, 0.75, 1.0),
            _TRD_OPTIONS,
        ),
        Preset(
            "baseline",
            "Full resolution throughout: the reference every saving is measured against",
            "-",
            _fixed(ConstantSchedule),
        ),
    )
}


def get_preset(name: str, **overrides: Any) -> ResolutionSchedule:
    """The schedule of preset ``name``, with its parameters optionally overridden.

    ``get_preset("trd-window", low_res=96)``; an unknown name raises and lists the valid ones.
    """
    return _preset(name).schedule(**overrides)


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown `preset` {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_schedule(
    preset: str | None = None,
    low_res: int | None = None,
    until: float | None = None,
    prob: float | None = None,
    seed: int = 0,
    *,
    prob_end: float | None = None,
    initial_scale: float | None = None,
) -> ResolutionSchedule:
    """The schedule a command line asks for: a preset with overrides, plain TRD, or the baseline.

    Options left as ``None`` were not given. Without a preset, ``low_res`` makes a TRD schedule
    read as ``TRDSchedule`` reads them (``prob_end`` makes its chance fall linearly to that value at the
    window's end), and no ``low_res`` means the full-resolution baseline, for which the TRD
    options make no sense. ``initial_scale`` is the ``composer`` preset's.
    """
    options = {"low_res": low_res, "until": until, "prob": prob, "prob_end": prob_end, "initial_scale": initial_scale}
    given = {k: v for k, v in options.items() if v is not None}
    if preset is None:
        if "initial_scale" in given:
            raise ConfigError("`initial_scale` is the composer preset's: give `preset` composer with it")
        if low_res is None:
            if given:
                raise ConfigError(
                    f"{', '.join(named(given))} need `low_res` (or a `preset`): without it the run is the "
                    "full-resolution baseline",
                )
            return ConstantSchedule()
        return TRDSchedule(low_res, until=until, prob=prob, seed=seed, prob_end=prob_end)
    entry = _preset(preset)
    refused = [k for k in given if k not in entry.options]
    if refused:
        accepted = ", ".join(named(entry.options)) or "none"
        raise ConfigError(f"{', '.join(named(refused))} cannot override preset {preset} (options it takes: {accepted})")
    return entry.schedule(seed=seed, **given)
