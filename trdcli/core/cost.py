"""The cost model: FLOPs per image at each resolution, measured, and the compute of a run.

Units (docs/method.md, "Compute"): FLOPs, two per multiply-add, the convention of
``torch.utils.flop_counter.FlopCounterMode``. torchvision publishes multiply-adds (GMACs):
ResNet-50 at 224 px is 4.089 GMACs = 8.18 GFLOPs forward. FlopCounterMode counts
convolutions and matrix products; normalisation, activations and pooling are not counted
(well under 1% of a ResNet's total).

The per-image training cost at a resolution is measured, not guessed: forward plus backward
of the actual model on a batch at that resolution, run on the ``meta`` device so nothing is
computed and no memory is touched. The training compute of a run is the sum over its steps
of ``images in the step * train FLOPs per image at the step's resolution``; the baseline is
the same steps at full resolution; **compute saved = 1 - run / baseline**.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from trdcli.core.defaults import recalibration_batches
from trdcli.core.errors import ConfigError, require_positive_int
from trdcli.core.ledger import baseline_cost, share_of_baseline
from trdcli.core.schedules import ResolutionSchedule

if TYPE_CHECKING:
    import torch.nn as nn

# Measuring with two images keeps BatchNorm in training mode well defined even where a
# feature map shrinks to 1x1; FLOPs are linear in the batch, so per image = total / 2.
_MEASURE_BATCH = 2


@dataclass(frozen=True)
class ImageFlops:
    """FLOPs to process one image at ``px`` x ``px``."""

    px: int
    forward_flops: int
    train_flops: int  # forward + backward
    # Whether the model keeps BatchNorm statistics, which recalibration re-estimates; a model normalised
    # by LayerNorm or GroupNorm alone (ViT, DeiT, Swin, ConvNeXt) keeps none, so nothing is recalibrated.
    has_batchnorm: bool = True

    @property
    def recalibration_flops(self) -> int:
        """What recalibrating BatchNorm on one image costs: a forward pass, if there is BatchNorm to recalibrate."""
        return self.forward_flops if self.has_batchnorm else 0


def keeps_running_statistics(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm layer with running statistics (what evaluation normalises with)."""
    import torch.nn as nn

    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats


def has_batchnorm(model: nn.Module) -> bool:
    return any(keeps_running_statistics(m) for m in model.modules())


def _strip_hooks_memo(model: nn.Module) -> dict[int, object]:
    """deepcopy memo that gives the copy empty hook tables: hooks may close over a whole Learner."""
    memo: dict[int, object] = {}
    for module in model.modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") and attr.endswith("hooks") and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return memo


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the ``meta`` device.

    Costs no memory for weights and leaves the original (its weights, BatchNorm statistics,
    gradients and hooks) untouched.
    """
    import torch
    import torch.nn as nn

    memo = _strip_hooks_memo(model)
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        # Every parameter gets a gradient, as in training from scratch: frozen layers would
        # make the backward cheaper, but the cost model describes full training.
        memo[id(tensor)] = nn.Parameter(meta, requires_grad=True) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _sum_outputs(output) -> torch.Tensor:  # noqa: F821
    import torch

    if isinstance(output, torch.Tensor):
        return output.float().sum()
    if isinstance(output, Mapping):
        output = list(output.values())
    tensors = [o for o in output if isinstance(o, torch.Tensor)]
    if not tensors:
        raise ConfigError(f"cannot measure FLOPs: the model returned {type(output).__name__} with no tensor")
    return sum(t.float().sum() for t in tensors)


def _conv_backward_flops(
    grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding, _groups,
    output_mask, out_shape=None, **kwargs,
) -> int:  # fmt: skip
    """FLOPs of ``aten.convolution_backward``: each gradient asked for costs what the forward did.

    The input gradient is a transposed convolution of the output gradient with the weight, and
    the weight gradient a convolution of the input with the output gradient; both take exactly
    the forward's multiply-adds, ``N * prod(spatial) * prod(weight shape)`` (the weight shape is
    already per group). torch's own formula (2.14) forgets the groups in the weight gradient and
    counts a depthwise convolution's backward 33 times too high (pytorch/pytorch#183405).
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * x_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _attention_flops() -> dict:
    """Formulas for the fused attention kernel FlopCounterMode leaves out (torch 2.14 counts the CUDA
    kernels, not the CPU's flash kernel): its ``q @ k`` and ``p @ v`` products, so attention is
    counted on every backend. On the meta device, where trd measures, torch decomposes attention
    into those products, which FlopCounterMode counts as they are."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    formulas = {}
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        formulas[cpu_flash] = lambda query_shape, key_shape, value_shape, *args, **kwargs: flop_counter.sdpa_flop_count(
            query_shape, key_shape, value_shape
        )
    cpu_flash_backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if cpu_flash_backward is not None:
        # Each of the two products' gradients costs what its forward did, as on the meta device's
        # decomposition; torch's own backward formula also counts the kernel recomputing ``q @ k``.
        formulas[cpu_flash_backward] = lambda grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs: (
            2 * flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)
        )
    return formulas


# What a model raises when it cannot take an input size: timm's patch embedding asserts, a window
# or a reshape fails as a RuntimeError, a shape check as a ValueError.
_SIZE_ERRORS = (AssertionError, RuntimeError, ValueError)
# How far from a size the model cannot take to look for sizes it can (a ViT's patch is up to 32 px).
_NEAREST_SIZE_REACH_PX = 64
# Sizes that round to one grid span less than a network's largest stride (32 px).
_FIXED_BAND_MAX_PX = 32


class SizeNotTakenError(ConfigError):
    """The model cannot take images of a size the run would train or evaluate at."""


def _takes(meta_model: nn.Module, px: int, in_channels: int) -> bool:
    import torch

    try:
        with torch.no_grad():
            meta_model(torch.empty(_MEASURE_BATCH, in_channels, px, px, device="meta"))
    except _SIZE_ERRORS:
        return False
    return True


def nearest_sizes_taken(meta_model: nn.Module, px: int, in_channels: int = 3) -> list[int]:
    """The nearest size below ``px`` and above it that ``meta_model`` (on the meta device) takes."""
    below = range(px - 1, max(px - _NEAREST_SIZE_REACH_PX, 0), -1)
    above = range(px + 1, px + _NEAREST_SIZE_REACH_PX + 1)
    found = [next((p for p in side if _takes(meta_model, p, in_channels)), None) for side in (below, above)]
    return [p for p in found if p is not None]


def _fixed_band(meta_model: nn.Module, px: int, near: list[int], in_channels: int) -> tuple[int, int] | None:
    """The narrow band of sizes a model fixed to one grid takes, if it is one; None for a model that resizes.

    Layers fixed to one grid when the model was built (MLP-Mixer's token mixing, CoAtNet's or LeViT's
    attention biases) take only the sizes that round to that grid: one run of sizes narrower than a
    network's stride, all on one side of ``px``. A model that resizes takes sizes on both sides, or
    sizes spaced a patch apart.
    """
    if len(near) != 1:
        return None
    step = 1 if near[0] > px else -1
    reach = range(near[0], px + step * _NEAREST_SIZE_REACH_PX + step, step)
    taken = [p for p in reach if p > 0 and _takes(meta_model, p, in_channels)]
    if max(taken) - min(taken) + 1 != len(taken) or len(taken) >= _FIXED_BAND_MAX_PX:
        return None
    return min(taken), max(taken)


def size_not_taken(meta_model: nn.Module, px: int, in_channels: int, exc: BaseException) -> SizeNotTakenError:
    from trdcli.core.errors import one_line

    near = nearest_sizes_taken(meta_model, px, in_channels)
    any_size = "or choose a model that takes any size (a CNN, or a timm ViT, DeiT or Swin)"
    band = _fixed_band(meta_model, px, near, in_channels)
    if band is not None:
        sizes = f"{band[0]} px" if band[0] == band[1] else f"{band[0]} to {band[1]} px"
        return SizeNotTakenError(
            f"the model takes only {sizes} images, so it cannot train at {px} px ({one_line(exc)}): "
            f"train it at the size it was built for without reduced steps, {any_size}"
        )
    if near:
        what_to_do = f"the nearest sizes it takes: {' and '.join(f'{p} px' for p in near)}"
    else:
        what_to_do = (
            f"it takes no size within {_NEAREST_SIZE_REACH_PX} px of it: train it at the size it was built for "
            f"without reduced steps, {any_size}"
        )
    return SizeNotTakenError(f"the model cannot take {px} px images ({one_line(exc)}); {what_to_do}")


def count_image_flops(model: nn.Module, px: int, in_channels: int = 3) -> ImageFlops:
    """Measure forward and forward+backward FLOPs per image of ``model`` at ``px`` x ``px``.

    Runs a ``meta``-device copy in training mode under ``FlopCounterMode``; ``model`` itself
    is not touched.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    require_positive_int("px", px)
    meta_model = meta_copy(model).train()
    images = torch.empty(_MEASURE_BATCH, in_channels, px, px, device="meta")
    corrected = {torch.ops.aten.convolution_backward: _conv_backward_flops, **_attention_flops()}
    try:
        with FlopCounterMode(display=False, custom_mapping=corrected) as forward_counter:
            output = meta_model(images)
    except _SIZE_ERRORS as exc:  # the search for sizes it takes runs outside the counter
        raise size_not_taken(meta_model, px, in_channels, exc) from exc
    loss = _sum_outputs(output)  # sums are not counted: FlopCounterMode counts products
    with FlopCounterMode(display=False, custom_mapping=corrected) as backward_counter:
        loss.backward()
    forward = forward_counter.get_total_flops()
    backward = backward_counter.get_total_flops()
    return ImageFlops(
        px=px,
        forward_flops=forward // _MEASURE_BATCH,
        train_flops=(forward + backward) // _MEASURE_BATCH,
        has_batchnorm=has_batchnorm(meta_model),
    )


def model_fingerprint(model: nn.Module) -> str:
    """A key that identifies a model's architecture (structure and shapes, not weights)."""
    digest = hashlib.sha1(repr(model).encode())
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    return f"{type(model).__name__}-{digest.hexdigest()[:16]}"


def flops_key(arch_key: str, num_classes: int, px: int, in_channels: int = 3) -> str:
    """What a stored count is filed under: the model, its input and the torch whose counting rules it reflects."""
    return f"{arch_key}|classes={num_classes}|in={in_channels}|px={px}|torch={_torch_minor_version()}"


@lru_cache(maxsize=1)
def _torch_minor_version() -> str:
    # From the installed package's metadata: a plan answered from a cache never imports torch.
    from importlib.metadata import version

    return ".".join(version("torch").split("+")[0].split(".")[:2])


class FlopsStore(Protocol):
    """Where a :class:`FlopsTable` keeps counts between processes (``trdcli.run.flops_cache.FlopsCache``)."""

    def get(self, key: str, px: int) -> ImageFlops | None: ...

    def put(self, key: str, flops: ImageFlops) -> None: ...


class FlopsTable:
    """FLOPs per image of one architecture at any resolution, measured once per resolution.

    Build it from a model in hand (:meth:`for_model`), or from a named architecture with
    :func:`trdcli.run.flops_cache.arch_flops`; call :meth:`at` with a resolution.
    """

    def __init__(
        self,
        arch_key: str,
        num_classes: int,
        build_model: Callable[[], nn.Module],
        *,
        in_channels: int = 3,
        cache: FlopsStore | None = None,
    ):
        self.arch_key = arch_key
        self.num_classes = num_classes
        self.in_channels = in_channels
        self._build_model = build_model
        self._model: nn.Module | None = None
        self._cache = cache
        self._by_px: dict[int, ImageFlops] = {}

    @classmethod
    def for_model(
        cls, model: nn.Module, num_classes: int, *, in_channels: int = 3, cache: FlopsStore | None = None
    ) -> FlopsTable:
        return cls(model_fingerprint(model), num_classes, lambda: model, in_channels=in_channels, cache=cache)

    def is_known(self, px: int) -> bool:
        """Whether :meth:`at` answers ``px`` without building (or importing) the model."""
        if px in self._by_px:
            return True
        return self._cache is not None and self._cache.get(self._key(px), px) is not None

    def _key(self, px: int) -> str:
        return flops_key(self.arch_key, self.num_classes, px, self.in_channels)

    def at(self, px: int) -> ImageFlops:
        # Asked once per training step by the callback: answer from this table's own dict.
        if px in self._by_px:
            return self._by_px[px]
        flops = self._cache.get(self._key(px), px) if self._cache is not None else None
        if flops is None:
            if self._model is None:
                self._model = self._build_model()
            flops = count_image_flops(self._model, px, self.in_channels)
            if self._cache is not None:
                self._cache.put(self._key(px), flops)
        self._by_px[px] = flops
        return flops


# Plans are worked out in slices of this many steps and kept as counts (plan_groups), so a plan's
# memory is one slice's arrays (about 20 MB) however long the run; ImageNet's 90 epochs at batch 256
# is 450,000 steps, two slices.
PLAN_SLICE_STEPS = 1 << 18
# The limit is time, not memory: planning takes about 0.05 s per million steps on one core, so a
# billion steps (2,000 times ImageNet's 90 epochs at batch 256) is about a minute of it. Longer runs
# are refused in one line rather than leave the command thinking for longer.
MAX_PLANNED_STEPS = 1_000_000_000


@dataclass(frozen=True)
class RunShape:
    """The shape of a training run: what fixes its number of optimizer steps."""

    train_images: int
    batch_size: int
    epochs: int
    full_px: int
    drop_last: bool = True  # fastai drops the last partial training batch

    def __post_init__(self):
        for label in ("train_images", "batch_size", "epochs", "full_px"):
            require_positive_int(label, getattr(self, label))
        if self.drop_last and self.batch_size > self.train_images:
            raise ConfigError(
                f"batch size {self.batch_size} is larger than the {self.train_images} training images: "
                "no full batch to train on"
            )
        if self.total_steps > MAX_PLANNED_STEPS:
            raise ConfigError(
                f"a run of {self.total_steps:,} optimizer steps ({self.epochs} `epochs` of {self.steps_per_epoch}) "
                f"is more than the {MAX_PLANNED_STEPS:,} steps trd plans (about a minute of planning)"
            )

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_last:
            return self.train_images // self.batch_size
        return -(-self.train_images // self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def images_per_epoch(self) -> int:
        return self.train_images if not self.drop_last else self.steps_per_epoch * self.batch_size

    @property
    def total_images(self) -> int:
        """Images the run trains on, over all its steps."""
        return self.images_per_epoch * self.epochs

    def images_at(self, steps: np.ndarray) -> np.ndarray:
        """Images in each of ``steps`` (the last batch of an epoch may be short without drop_last)."""
        images = np.full(np.shape(steps), self.batch_size, dtype=np.int64)
        if not self.drop_last and self.train_images % self.batch_size:
            last = np.asarray(steps) % self.steps_per_epoch == self.steps_per_epoch - 1
            images[last] = self.train_images % self.batch_size
        return images

    def slices(self) -> Iterator[tuple[int, int]]:
        """The run's steps as ``[start, stop)`` slices of at most PLAN_SLICE_STEPS."""
        for start in range(0, self.total_steps, PLAN_SLICE_STEPS):
            yield start, min(start + PLAN_SLICE_STEPS, self.total_steps)


@dataclass(frozen=True)
class ComputeSummary:
    """What a run (planned or realised) costs, against its full-resolution baseline."""

    full_px: int
    steps_by_px: dict[int, int]
    images_by_px: dict[int, int]
    flops_by_px: dict[int, ImageFlops]
    train_flops: int  # the training steps alone
    baseline_train_flops: int
    valid_flops: int = 0
    # BatchNorm recalibration's forward passes: only a reduced run does them, so they count
    # against the baseline (docs/method.md, "Compute").
    recalibration_flops: int = 0

    @property
    def steps(self) -> int:
        return sum(self.steps_by_px.values())

    @property
    def run_flops(self) -> int:
        """What the run spends to train: its steps and BatchNorm recalibration."""
        return self.train_flops + self.recalibration_flops

    @property
    def compute_fraction(self) -> float:
        """The run's compute (steps and recalibration) over the baseline's."""
        return share_of_baseline(self.run_flops, self.baseline_train_flops)

    @property
    def compute_saved_frac(self) -> float:
        return 1.0 - self.compute_fraction

    @property
    def train_compute_fraction(self) -> float:
        """The training steps alone over the baseline's."""
        return share_of_baseline(self.train_flops, self.baseline_train_flops)

    @property
    def train_compute_saved_frac(self) -> float:
        return 1.0 - self.train_compute_fraction


def _int_array(values: Iterable[int]) -> np.ndarray:
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64)


def validation_flops(valid_images: int, passes: int, forward_flops_per_image: int, devices: int = 1) -> int:
    """Validation's compute: ``passes`` forward passes over ``valid_images`` on each of ``devices``. Every
    device of a distributed run validates every image (trd's loaders leave validation whole, so each
    rank's metrics are the same computation), so ``trd train`` and ``trd estimate-cost --devices``
    both count it once per device."""
    return valid_images * passes * forward_flops_per_image * devices


def summarize_counts(
    steps_by_px: Mapping[int, int],
    images_by_px: Mapping[int, int],
    full_px: int,
    flops_at: Callable[[int], ImageFlops],
    *,
    valid_images: int = 0,
    valid_passes: int = 0,
    valid_devices: int = 1,
    recalibration_images: int = 0,
) -> ComputeSummary:
    """Training compute of the steps and images counted at each resolution, and of the same at ``full_px``.

    The one function the plan (``trd estimate-cost``) and the record of a real run
    (:class:`trdcli.callbacks.trd.TRDCallback`) both go through, so the two agree exactly.
    Validation compute (``valid_passes`` passes over ``valid_images`` at full resolution, forward
    only, on each of ``valid_devices``: :func:`validation_flops`) is reported separately and is the
    same for a run and its baseline.
    ``recalibration_images`` run forward once at full resolution to recalibrate BatchNorm.
    """
    if recalibration_images < 0:
        raise ConfigError(f"got {recalibration_images} recalibration images")
    # The full resolution is always listed (with 0 steps if none ran): the baseline needs it.
    pxs = sorted({int(px) for px, n in steps_by_px.items() if n} | {full_px}, reverse=True)
    steps = {px: int(steps_by_px.get(px, 0)) for px in pxs}
    images = {px: int(images_by_px.get(px, 0)) for px in pxs}
    flops_by_px = {px: flops_at(px) for px in pxs}
    # Python ints: exact, however large the run (ImageNet runs reach 1e18 FLOPs).
    full = flops_by_px[full_px]
    return ComputeSummary(
        full_px=full_px,
        steps_by_px=steps,
        images_by_px=images,
        flops_by_px=flops_by_px,
        train_flops=sum(images[px] * flops_by_px[px].train_flops for px in pxs),
        baseline_train_flops=baseline_cost(sum(images.values()), full.train_flops),
        valid_flops=validation_flops(valid_images, valid_passes, full.forward_flops, valid_devices),
        recalibration_flops=recalibration_images * full.forward_flops,
    )


def summarize_compute(
    px_per_step: Iterable[int],
    images_per_step: Iterable[int],
    full_px: int,
    flops_at: Callable[[int], ImageFlops],
    **extra,
) -> ComputeSummary:
    """:func:`summarize_counts` of a sequence of steps (the resolution and images of each)."""
    px_arr = _int_array(px_per_step)
    n_arr = _int_array(images_per_step)
    if px_arr.shape != n_arr.shape:
        raise ConfigError(f"got {px_arr.size} resolutions for {n_arr.size} steps")
    pxs = [int(p) for p in np.unique(px_arr)]
    steps = {px: int((px_arr == px).sum()) for px in pxs}
    images = {px: int(n_arr[px_arr == px].sum()) for px in pxs}
    return summarize_counts(steps, images, full_px, flops_at, **extra)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One completed optimizer step, as it ran."""

    fit: int  # index of the ``fit`` call (``fine_tune`` makes two)
    epoch: int
    step: int  # 0-based step within the fit: epoch * steps_per_epoch + iteration
    total_steps: int
    px: int
    full_px: int
    images: int
    train_flops: int  # images * train FLOPs per image at px


@dataclass(frozen=True)
class StepGroup:
    """The steps of one epoch of one fit that ran at one resolution: what a checkpoint keeps.

    A run's account needs only these counts (ImageNet for 90 epochs is 180 groups where it is
    450,000 steps); the order of the steps is the schedule's, a pure function of the step.
    """

    fit: int
    epoch: int
    full_px: int
    px: int
    steps: int
    images: int


class StepCounter:
    """Steps counted by (fit, epoch, full resolution, resolution) as they finish."""

    def __init__(self):
        self._counts: dict[tuple[int, int, int, int], list[int]] = {}

    def add(self, record: StepRecord) -> None:
        count = self._counts.setdefault((record.fit, record.epoch, record.full_px, record.px), [0, 0])
        count[0] += 1
        count[1] += record.images

    def groups(self) -> list[StepGroup]:
        return [StepGroup(*key, steps, images) for key, (steps, images) in sorted(self._counts.items())]


def group_steps(records: Iterable[StepRecord]) -> list[StepGroup]:
    """``records`` counted by (fit, epoch, full resolution, resolution), in that order."""
    counter = StepCounter()
    for record in records:
        counter.add(record)
    return counter.groups()


def counts_by_px(groups: Iterable[StepGroup]) -> tuple[dict[int, int], dict[int, int]]:
    """(steps, images) of ``groups`` by resolution."""
    steps: dict[int, int] = {}
    images: dict[int, int] = {}
    for g in groups:
        steps[g.px] = steps.get(g.px, 0) + g.steps
        images[g.px] = images.get(g.px, 0) + g.images
    return steps, images


def summarize_groups(
    groups: Iterable[StepGroup],
    flops_at: Callable[[int], ImageFlops],
    fit: int | None = None,
    recalibration_images: int = 0,
) -> ComputeSummary:
    """The compute of counted steps (of one ``fit`` if given), by :func:`summarize_counts`."""
    groups = [g for g in groups if fit is None or g.fit == fit]
    if not groups:
        raise ConfigError("no training step has been recorded yet")
    full = {g.full_px for g in groups}
    if len(full) > 1:
        raise ConfigError(f"the fits ran at different full resolutions {sorted(full)}; pass fit=<index>")
    steps, images = counts_by_px(groups)
    return summarize_counts(steps, images, full.pop(), flops_at, recalibration_images=recalibration_images)


def _plan_slices(schedule: ResolutionSchedule, shape: RunShape) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(steps, their resolutions) slice by slice."""
    for start, stop in shape.slices():
        px = schedule.plan_range(start, stop, shape.total_steps, shape.full_px, shape.steps_per_epoch)
        yield np.arange(start, stop, dtype=np.int64), px


def plan_groups(schedule: ResolutionSchedule, shape: RunShape) -> list[StepGroup]:
    """The planned run counted by epoch and resolution (as fit 0), as a run's checkpoint counts what ran.

    Worked out slice by slice (:data:`PLAN_SLICE_STEPS`): memory and time grow with the slices
    and the groups, not with an array per step.
    """
    counts: dict[tuple[int, int], list[int]] = {}
    for steps, px in _plan_slices(schedule, shape):
        pxs, px_index = np.unique(px, return_inverse=True)
        epochs = steps // shape.steps_per_epoch
        key = (epochs - epochs[0]) * len(pxs) + px_index.reshape(-1)
        n_steps = np.bincount(key)
        n_images = np.bincount(key, weights=shape.images_at(steps))  # exact: well below 2**53 per slice
        for k in np.flatnonzero(n_steps):
            count = counts.setdefault((int(epochs[0]) + int(k) // len(pxs), int(pxs[k % len(pxs)])), [0, 0])
            count[0] += int(n_steps[k])
            count[1] += int(round(n_images[k]))
    return [StepGroup(0, epoch, shape.full_px, px, n, i) for (epoch, px), (n, i) in sorted(counts.items())]


def plan_profile(schedule: ResolutionSchedule, shape: RunShape, points: int = 1000) -> np.ndarray:
    """The planned resolution over the run, as the mean px of each of ``points`` runs of steps, the
    i-th starting at step ``i * total_steps // points`` (every step when the run is shorter): what a
    sparkline or a plot shows."""
    points = min(points, shape.total_steps)
    edges = np.arange(points + 1, dtype=np.int64) * shape.total_steps // points
    sums, counts = np.zeros(points), np.zeros(points)
    for steps, px in _plan_slices(schedule, shape):
        bucket = np.searchsorted(edges, steps, side="right") - 1
        sums += np.bincount(bucket, weights=px, minlength=points)
        counts += np.bincount(bucket, minlength=points)
    return sums / counts


def groups_reduce(groups: Iterable[StepGroup]) -> bool:
    """Whether any of ``groups`` ran (or plans to run) below its full resolution."""
    return any(g.px != g.full_px and g.steps for g in groups)


def recalibration_images(batches: int, shape: RunShape) -> int:
    """Images BatchNorm recalibration runs forward: ``batches`` batches of the training loader, one epoch at most."""
    batches = min(batches, shape.steps_per_epoch)
    short_last = not shape.drop_last and batches == shape.steps_per_epoch and shape.train_images % shape.batch_size
    return shape.train_images if short_last else batches * shape.batch_size


def plan_compute(
    schedule: ResolutionSchedule,
    shape: RunShape,
    flops_at: Callable[[int], ImageFlops],
    *,
    valid_images: int = 0,
    groups: list[StepGroup] | None = None,
    bn_recalibrate: int | None = None,
    devices: int = 1,
) -> ComputeSummary:
    """The compute a run of ``shape`` under ``schedule`` will cost on ``devices`` (validation once per
    epoch, on every device).

    ``bn_recalibrate`` is ``trd train``'s: batches of BatchNorm recalibration after the run, or
    None for the default (:func:`~trdcli.core.defaults.recalibration_batches`). ``groups``, if the
    caller already has ``plan_groups(schedule, shape)``, saves planning twice.
    """
    groups = plan_groups(schedule, shape) if groups is None else groups
    batches = recalibration_batches(bn_recalibrate, groups_reduce(groups), flops_at(shape.full_px).has_batchnorm)
    steps, images = counts_by_px(groups)
    return summarize_counts(
        steps,
        images,
        shape.full_px,
        flops_at,
        valid_images=valid_images,
        # Every epoch validates, and trd train validates once more after recalibrating BatchNorm.
        valid_passes=(shape.epochs + (1 if batches else 0)) if valid_images else 0,
        valid_devices=devices,
        recalibration_images=recalibration_images(batches, shape),
    )
