"""trd's defaults that more than one layer reads, torch-free, defined once: the TRD reading and BatchNorm's."""

from __future__ import annotations

# trd's default TRD reading, chosen by `trd compare` on the demo's data (seeds 10 and 11, then
# reported on other seeds and on imagenette; docs/method.md): 90% of the steps reduced, drawn
# at random over the whole run (the spread reading), with BatchNorm recalibrated at the end
# (DEFAULT_BN_RECALIBRATE_BATCHES below). The window reading (until 0.9, prob 1) lost
# 15 points there against the baseline at the same compute.
DEFAULT_UNTIL = 1.0
DEFAULT_PROB = 0.9


def trd_reading(until: float | None, prob: float | None) -> tuple[float, float]:
    """(until, prob) for what was given: neither is trd's default recipe; ``until`` alone asks for a
    window (every step in it reduced, prob 1); ``prob`` alone spreads over the whole run (until 1)."""
    if until is None and prob is None:
        return DEFAULT_UNTIL, DEFAULT_PROB
    return (1.0 if until is None else until), (1.0 if prob is None else prob)


# How BatchNorm treats reduced steps (trdcli.callbacks.batchnorm): one set of layers for all steps, or a private
# copy for reduced ones. Here, not there, so a config is checked without importing torch.
BN_MODES = ("shared", "private")


def check_bn_mode(bn_mode: str, has_batchnorm: bool, arch: str) -> None:
    """Refuse private BatchNorm on a model without BatchNorm, where it would change nothing."""
    from trdcli.core.errors import ConfigError

    if bn_mode == "private" and not has_batchnorm:
        raise ConfigError(
            f"`bn_mode` private gives each BatchNorm layer a copy for reduced steps, and `arch` {arch} has no "
            "BatchNorm (it normalises with LayerNorm or GroupNorm, which keep no statistics): leave it shared"
        )


# After a fit that reduced any step, BatchNorm statistics are re-estimated on this many
# full-resolution batches unless told otherwise: on the demo's data it recovered TRD's loss
# (window 88.1% -> spread + recalibration 98.4%, against the baseline's 100%; docs/method.md).
DEFAULT_BN_RECALIBRATE_BATCHES = 8
# Which view of the training images recalibration sees: "train", the training augmentation at full
# resolution (random-resized crops, flips), or "test", the view validation and `trd eval` see (resized,
# centre-cropped, unflipped), as FixRes matches the statistics to the test-time view. On the demo's
# two datasets and an imagenette2-224 subset (7 seed pairs, docs/method.md) the test view was 0.4 points
# lower on average, every pair within the seeds' spread: the default stays the training view.
BN_RECAL_VIEWS = ("train", "test")
DEFAULT_BN_RECAL_VIEW = "train"


def check_batchnorm_options(
    bn_mode: str | None = None, bn_recalibrate: int | None = None, bn_recal_view: str | None = None, *,
    mode_name: str = "bn_mode",
) -> None:
    """The one check of BatchNorm's options (None: not given here): a mode of BN_MODES, 0 or more
    recalibration batches, a view of BN_RECAL_VIEWS. ``mode_name``: what the caller calls the mode."""
    from trdcli.core.errors import ConfigError, is_int

    if bn_mode is not None and bn_mode not in BN_MODES:
        raise ConfigError(f"`{mode_name}` must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    if bn_recalibrate is not None and (not is_int(bn_recalibrate) or bn_recalibrate < 0):
        raise ConfigError(f"`bn_recalibrate` must be 0 or more batches, got {bn_recalibrate!r}")
    if bn_recal_view is not None and bn_recal_view not in BN_RECAL_VIEWS:
        raise ConfigError(f"`bn_recal_view` must be one of {', '.join(BN_RECAL_VIEWS)}, got {bn_recal_view!r}")


def recalibration_batches(bn_recalibrate: int | None, any_step_reduced: bool, has_batchnorm: bool = True) -> int:
    """Batches to recalibrate BatchNorm on after a fit: as given, or by default only if a step was reduced;
    none for a model without BatchNorm, which has no statistics to re-estimate."""
    if not has_batchnorm:
        return 0
    if bn_recalibrate is not None:
        return bn_recalibrate
    return DEFAULT_BN_RECALIBRATE_BATCHES if any_step_reduced else 0


# RandomResizedCrop's smallest area, as a share of the image: fastai's Imagenette default for short runs.
# Read by trd train's loader, trd prepare's copy (which must cover every crop) and trd estimate-cost.
DEFAULT_MIN_SCALE = 0.35


def check_ema_decay(decay: float | None) -> None:
    """An EMA's decay is in (0, 1); None keeps no EMA."""
    from trdcli.core.errors import ConfigError

    if decay is not None and not (isinstance(decay, float | int) and 0 < decay < 1):
        raise ConfigError(f"`ema` must be a decay in (0, 1), such as 0.999, got {decay!r}")


# The numeric precisions a run can train in (trdcli.run.precision resolves "auto" for the device).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
