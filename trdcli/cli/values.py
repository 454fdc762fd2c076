"""Values as a command line writes them -> the typed values the core takes.

``"224=2600,112=9800"`` becomes a :class:`~trdcli.run.throughput.Throughput`, ``"12h"`` a
:class:`~trdcli.plan.estimate.Budget`; the core never sees the strings.
"""

from __future__ import annotations

import math
import re

from trdcli.core.errors import ConfigError

LR_FIND = "find"


def parse_lr(text: str) -> float | None:
    """A learning rate, or None for ``find`` (run lr_find)."""
    if text.strip().lower() == LR_FIND:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"`lr` must be a number or 'find', got {text!r}") from None


def parse_throughput(text: str) -> dict[int, float]:
    """``"224=2600,112=9800"`` -> ``{224: 2600.0, 112: 9800.0}`` (images/s at each px)."""
    out: dict[int, float] = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*=\s*([0-9.eE+]+)\s*", part)
        if not match:
            raise ConfigError(f"`throughput` must look like 224=2600,112=9800 (px=images/s), got {text!r}")
        px, rate = int(match.group(1)), float(match.group(2))
        if px < 1 or not rate > 0 or not math.isfinite(rate):
            raise ConfigError(f"`throughput` needs positive px and images/s, got {part.strip()!r}")
        out[px] = rate
    return out


def parse_utilisation(text: str, full_px: int) -> dict[int, float]:
    """``"0.19"`` (every resolution) -> ``{full_px: 0.19}``; ``"224=0.19,112=0.12"`` -> one share per px."""
    try:
        return {full_px: float(text)}
    except ValueError:
        pass
    out: dict[int, float] = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*=\s*([0-9.eE+-]+)\s*", part)
        if not match:
            raise ConfigError(
                f"`utilisation` must be a share (0.19) or px=share pairs (224=0.19,112=0.12), got {text!r}"
            )
        out[int(match.group(1))] = float(match.group(2))
    return out


_TIME_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400, "days": 86400}


def parse_budget(text: str):
    """``0.4`` or ``40%`` (of the baseline's compute), ``12h``/``90m``/``3d`` (time), ``$500``/``500usd`` (money)."""
    from trdcli.plan.estimate import Budget

    raw = text.strip().lower()
    if match := re.fullmatch(r"([0-9.]+)\s*%", raw):
        return Budget("fraction", float(match.group(1)) / 100, text)
    if match := re.fullmatch(r"([0-9.]+)\s*(s|sec|m|min|h|hr|d|day|days)", raw):
        return Budget("time", float(match.group(1)) * _TIME_UNITS[match.group(2)], text)
    if match := re.fullmatch(r"\$\s*([0-9.]+)|([0-9.]+)\s*(usd|\$|eur|€)", raw):
        return Budget("money", float(match.group(1) or match.group(2)), text)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            "`budget` must be a fraction of the baseline (0.4 or 40%), a time (12h, 90m) or a price ($500), "
            f"got {text!r}",
        ) from None
    return Budget("fraction", value, text)


_SETTING_KEYS = {
    "preset": str,
    "low_res": int,
    "until": float,
    "prob": float,
    "prob_end": float,
    "initial_scale": float,
    "bn_mode": str,
    "bn_recalibrate": int,
    "bn_recal_view": str,
    "tail_lr": float,
}
# Recipe options a setting may change (trdcli.core.recipes.Recipe).
_RECIPE_SETTING_KEYS = {
    "opt": str,
    "momentum": float,
    "wd": float,
    "lr_schedule": str,
    "warmup_epochs": float,
    "label_smoothing": float,
    "mixup": float,
    "cutmix": float,
}


def parse_setting(text: str):
    """``trd-window``, ``baseline``, or ``[label:]key=value,...`` (keys: preset, low_res, until, prob,
    prob_end, initial_scale, bn_mode, bn_recalibrate, bn_recal_view, tail_lr, and the recipe's opt, momentum,
    wd, lr_schedule, warmup_epochs, label_smoothing, mixup, cutmix) -> a
    :class:`~trdcli.plan.compare.Setting`, labelled by its label or its text."""
    from trdcli.core.presets import PRESETS
    from trdcli.plan.compare import Setting

    label, sep, spec = text.partition(":")
    if not sep:
        label, spec = text, text
    label, spec = label.strip(), spec.strip()
    if "=" not in spec:
        if spec == "baseline":
            return Setting(label)
        if spec not in PRESETS:
            raise ConfigError(f"`setting` {text!r} is neither a preset ({', '.join(PRESETS)}) nor key=value pairs")
        return Setting(label, preset=spec)
    values, recipe_options = {}, {}
    keys = _SETTING_KEYS | _RECIPE_SETTING_KEYS
    for part in spec.split(","):
        key, _, raw = (piece.strip() for piece in part.partition("="))
        if key not in keys:
            raise ConfigError(f"`setting` {text!r}: unknown key {key!r}; use {', '.join(keys)}")
        try:
            value = keys[key](raw)
        except ValueError:
            raise ConfigError(f"`setting` {text!r}: {key} must be a number, got {raw!r}") from None
        (recipe_options if key in _RECIPE_SETTING_KEYS else values)[key] = value
    return Setting(label, **values, recipe_options=tuple(recipe_options.items()))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2``, ``7,`` (seed 7 alone) or ``3`` (that many seeds from 0)."""
    parts = text.split(",")
    if len(parts) == 2 and not parts[1].strip():
        parts = parts[:1]  # "7,": a list of one
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(f"`seeds` must be a count (3) or a list (0,1,2; one seed: 7,), got {text!r}") from None
    if "," not in text:
        if values[0] < 1:
            raise ConfigError(
                f"`seeds` must be a count of at least 1 (for seed {values[0]} alone: {values[0]},), got {text!r}"
            )
        return tuple(range(values[0]))
    return tuple(values)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``112,160,224`` -> ``(112, 160, 224)`` (test sizes in px, sorted)."""
    try:
        values = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ConfigError(f"`sizes` must be px separated by commas (112,160,224), got {text!r}") from None
    if values[0] < 1:
        raise ConfigError(f"`sizes` must be positive px, got {text!r}")
    return tuple(values)


def parse_milestones(text: str) -> tuple[float, ...]:
    """``30,60`` -> ``(30.0, 60.0)``: the epochs at which the step schedule's rate falls."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"`milestones` must be epochs separated by commas (30,60), got {text!r}") from None
