"""Will a training step fit? Memory of one step, estimated on the ``meta`` device before anything is allocated.

A step holds the weights, their gradients and the optimizer's state (Adam: two more copies),
plus every activation autograd saves for the backward pass. The saved activations are
measured, not guessed: a ``meta`` copy of the model runs forward under
``torch.autograd.graph.saved_tensors_hooks``, which sees each tensor the backward will need.
The estimate ignores the allocator's fragmentation and temporary buffers, so it is a floor:
a run that fails this check certainly does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from trdcli.core.errors import ConfigError

# Weights + gradients + Adam's two moment buffers, each the size of the weights.
_PARAM_COPIES = 4
_MEASURE_BATCH = 2  # as for FLOPs: BatchNorm needs more than one value per channel


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step needs at ``px`` with ``batch_size`` images."""

    px: int
    batch_size: int
    parameter_bytes: int  # weights, gradients and optimizer state
    activation_bytes: int  # saved for the backward pass, for the whole batch

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def estimate_step_memory(
    model, px: int, batch_size: int, in_channels: int = 3, mixed_precision: bool = False
) -> StepMemory:
    """Memory of one training step of ``model`` (untouched: a meta copy runs).

    ``mixed_precision``: the step runs under float16 autocast, which saves float16 copies of what it
    computes in float32 here, so each saved float32 value counts 2 bytes; the weights, their gradients and
    Adam's state stay float32, as fastai's ``to_fp16`` keeps them.
    """
    import torch

    from trdcli.core.cost import meta_copy

    meta_model = meta_copy(model).train()
    weights = {id(p) for p in meta_model.parameters()}  # counted with the parameters, not as activations
    seen: dict[int, int] = {}

    def pack(tensor):
        # A tensor saved by several operations is held once.
        if id(tensor) not in weights:
            halved = mixed_precision and tensor.dtype == torch.float32
            seen[id(tensor)] = tensor.numel() * (2 if halved else tensor.element_size())
        return tensor

    images = torch.empty(_MEASURE_BATCH, in_channels, px, px, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        meta_model(images)
    per_image = sum(seen.values()) / _MEASURE_BATCH
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return StepMemory(px, batch_size, _PARAM_COPIES * parameters, int(per_image * batch_size))


def check_step_fits(memory: StepMemory, available_bytes: int | None, device_label: str) -> None:
    """Refuse, with the estimate, a step that cannot fit in ``available_bytes``."""
    if available_bytes is None or memory.total_bytes <= available_bytes:
        return
    raise ConfigError(
        f"one training step at `size_px`={memory.px} with `batch_size`={memory.batch_size} needs at least "
        f"{_gib(memory.total_bytes)} ({_gib(memory.activation_bytes)} of activations), but {device_label} has "
        f"{_gib(available_bytes)} free; lower `size_px` or `batch_size`",
    )


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"
