"""Classification models by name: torchvision's, fastai's xresnet family, and timm's if installed.

Always built from scratch: nothing is downloaded. Local weights load with :func:`load_weights`.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

from trdcli.core.errors import ConfigError, UnknownArchError, one_line, require_positive_int

TIMM_PREFIX = "timm/"
# Position embeddings or fixed attention windows tie these to one input size, so they
# cannot take the reduced-resolution steps TRD is about.
_FIXED_SIZE_PREFIXES = ("vit_", "maxvit_")
# Auxiliary classifiers make the model return a tuple in training mode.
_NO_AUX = ("inception_v3", "googlenet")


@lru_cache(maxsize=1)
def torchvision_archs() -> tuple[str, ...]:
    # Cached: torchvision lists its models by importing and scanning them, about 0.4 s a call here, and a
    # run checks its arch several times.
    import torchvision

    return tuple(
        name
        for name in torchvision.models.list_models(module=torchvision.models)
        if not name.startswith(_FIXED_SIZE_PREFIXES)
    )


@lru_cache(maxsize=1)
def fastai_archs() -> tuple[str, ...]:
    from fastai.vision.models import xresnet

    return tuple(sorted(n for n in xresnet.__all__ if n.startswith(("xresnet", "xresnext", "xse_", "xsenet"))))


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def check_arch(arch: str) -> None:
    """Raise :class:`UnknownArchError`, with the closest names, if ``arch`` cannot be built."""
    if arch.startswith(_FIXED_SIZE_PREFIXES):
        raise UnknownArchError(
            f"`arch` {arch} (torchvision's) needs a fixed input size, so it cannot train at reduced resolution; "
            "choose timm's, which resizes (timm/vit_base_patch16_224, timm/swin_tiny_patch4_window7_224), "
            "or a convolutional model (resnet50, convnext_tiny, efficientnet_b0, ...)"
        )
    if arch.startswith(TIMM_PREFIX):
        if not _timm_available():
            raise UnknownArchError(
                f"`arch` {arch} needs timm, which is not installed: pip install 'trdcli[timm]' "
                "(in a checkout: pip install -e '.[timm]')"
            )
        import timm

        name = arch.removeprefix(TIMM_PREFIX)
        known = timm.list_models()
        if name not in known:
            close = [TIMM_PREFIX + c for c in difflib.get_close_matches(name, known, 3)]
            hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() lists them)"
            raise UnknownArchError(f"unknown timm model in `arch` {arch!r}{hint}")
        return
    if arch.startswith("x"):
        known = fastai_archs()
    else:
        known = torchvision_archs()
    if arch not in known:
        close = difflib.get_close_matches(
            arch, [*torchvision_archs(), *(fastai_archs() if arch.startswith("x") else ())], 3
        )
        hint = f"; did you mean {', '.join(close)}?" if close else " (torchvision, fastai xresnet or timm/<name>)"
        raise UnknownArchError(f"unknown `arch` {arch!r}{hint}")


def build_model(arch: str, num_classes: int, *, device: str | None = None, full_px: int | None = None) -> nn.Module:
    """A freshly initialised classifier with ``num_classes`` outputs, on ``device`` (``"meta"`` to count FLOPs).

    ``full_px``: the run's full size, for models whose parameters depend on it (a ViT's position
    embeddings hold one entry per patch of the full size); ``None`` builds the model's own default.
    """

    check_arch(arch)
    require_positive_int("num_classes", num_classes)
    if full_px is not None:
        require_positive_int("full_px", full_px)
    try:
        return _build(arch, num_classes, device or "cpu", full_px)
    except NotImplementedError:
        if device != "meta":
            raise
        # Some constructors compute layer widths with tensors (torchvision's RegNets), which the
        # meta device cannot read back: build on the CPU, then move.
        return _build(arch, num_classes, "cpu", full_px).to("meta")


def _build(arch: str, num_classes: int, device: str, full_px: int | None) -> nn.Module:
    import torch

    with torch.device(device):
        if arch.startswith(TIMM_PREFIX):
            return _build_timm(arch.removeprefix(TIMM_PREFIX), num_classes, full_px)
        if arch.startswith("x"):
            from fastai.vision.models import xresnet

            return getattr(xresnet, arch)(n_out=num_classes)
        import torchvision

        extra = {"aux_logits": False, "init_weights": True} if arch in _NO_AUX else {}
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)


def _build_timm(name: str, num_classes: int, full_px: int | None) -> nn.Module:
    """A timm model that takes every size a schedule uses.

    Transformers (ViT, DeiT, Swin, ...) are built with timm's own ``dynamic_img_size=True``: timm
    interpolates the position embeddings (and recomputes Swin's window masks) for each input size,
    so the model trains at the full size it was built for and at the reduced one. Models whose
    constructor takes only ``img_size`` are built for the full size; those that take neither
    (convolutional networks) take any size as they are.
    """
    import timm

    sized = {} if full_px is None else {"img_size": full_px}
    # Most sized first: a model that cannot resize at run time (MLP-Mixer, CoAtNet, MaxViT) is still built
    # for the run's full size, so it trains there (and is told it cannot take the reduced size).
    for keywords in ({"dynamic_img_size": True} | sized, sized):
        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **keywords)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def load_weights(model: nn.Module, path: str | Path, num_classes: int | None = None) -> list[str]:
    """Load a local state dict into ``model``; returns the keys left out because their shapes differ.

    Those may only be the classifier head of a checkpoint trained on another number of classes
    (tensors that differ from the model's in their first dimension alone, which is ``num_classes``).
    Any other difference (a ViT's position embeddings from another size, another variant's widths)
    is an error, as is a file that matches nothing of the model: never a silent partial load.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"`weights` file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of unpickling errors
        raise ConfigError(f"cannot read `weights` from {path}: {one_line(exc)}") from exc
    for wrapper_key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
    if not isinstance(state, dict):
        raise ConfigError(f"`weights` {path} hold no state dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise ConfigError(f"no tensor in {path} matches the model's parameter names and shapes")
    skipped = sorted(k for k in state if k not in usable)
    foreign = [k for k in skipped if k in own and not _is_head(tuple(state[k].shape), tuple(own[k].shape), num_classes)]
    if foreign:
        key = foreign[0]
        raise ConfigError(
            f"`weights` {path}: {key} has shape {tuple(state[key].shape)}, the model's {tuple(own[key].shape)} "
            f"({len(foreign)} such tensor(s)): they belong to a model built for another size or variant; give the "
            "size they were trained at, or the architecture they belong to"
        )
    model.load_state_dict(usable, strict=False)
    return skipped


def _is_head(theirs: tuple[int, ...], ours: tuple[int, ...], num_classes: int | None) -> bool:
    """Whether a tensor whose shape differs is the classifier's: another class count, nothing else."""
    return len(theirs) == len(ours) and theirs[1:] == ours[1:] and (num_classes is None or ours[0] == num_classes)
