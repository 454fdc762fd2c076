"""Image items and fastai DataLoaders: random-resized crops for training (at the size each step
asks for), resize + centre crop for evaluation, ImageNet normalisation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trdcli.core.defaults import DEFAULT_MIN_SCALE
from trdcli.core.errors import ConfigError, DataError
from trdcli.data.decode import load_random_crop, load_rgb
from trdcli.data.folders import ImageFolder

if TYPE_CHECKING:
    from fastai.data.core import DataLoaders

# Validation resizes to size / 0.875 and centre-crops `size` (224 from 256), the standard
# ImageNet evaluation crop.
CENTER_CROP_FRAC = 0.875


@dataclass(frozen=True)
class CropOptions:
    """How training images are cropped and decoded (evaluation images are always decoded in full).

    ``min_scale``: the smallest random-resized crop, as a share of the image's area. ``draft``:
    JPEGs decoded at reduced scale where the crop allows. ``direct_crops``: a reduced step's crop
    resampled straight to its size, not downsampled from the full-size crop.
    """

    min_scale: float = DEFAULT_MIN_SCALE
    draft: bool = True
    direct_crops: bool = False


class ImageItems:
    """A torch Dataset of (uint8 CHW image, label) from paths, with train or eval cropping.

    Training items are random-resized crops, flipped half the time, at ``size_px`` or at the
    size given with the index (``dataset[i, px]``: how :class:`~trdcli.data.sized_loader.SizedBatchesDL`
    asks for a reduced step's images): the full-size crop downsampled, or with
    ``direct_crops`` the crop resampled straight to ``px``; with ``draft``, JPEGs are decoded
    at reduced scale when the crop allows (:func:`trdcli.data.decode.load_random_crop`). Evaluation items are
    resized and centre-cropped at ``size_px``, always decoded in full.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, int]],
        size_px: int,
        train: bool,
        crops: CropOptions = CropOptions(),
        copies: Sequence[tuple[str, int, int] | None] | None = None,
    ):
        self.items = list(items)
        self.size_px = size_px
        self.train = train
        self.crops = crops
        # Per item, its prepared copy (path, the original's displayed width and height) or None:
        # reduced steps read it (trdcli.data.prepare); full steps and evaluation read the originals.
        self.copies = list(copies) if copies is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int | tuple[int, int]):
        import torch
        from fastai.torch_core import TensorCategory, TensorImage
        from torchvision.transforms.v2 import functional as TF

        index, px = index if isinstance(index, tuple) else (index, self.size_px)
        path, label = self.items[index]
        flip = bool(torch.rand(()) < 0.5) if self.train else False
        try:
            if self.train:
                full_px = None if self.crops.direct_crops else self.size_px
                scale = (self.crops.min_scale, 1.0)
                copy = self.copies[index] if self.copies is not None and px < self.size_px else None
                if copy is not None:  # the copy is already a downsample: resampled once, straight to px
                    full_px = None
                image = load_random_crop(path, px, scale, full_px=full_px, draft=self.crops.draft, flip=flip, copy=copy)
            else:
                image = load_rgb(path)
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            raise DataError(f"cannot read image {path}: {exc}") from exc
        if not self.train:
            image = _centre_crop(image, self.size_px)
        return TensorImage(TF.pil_to_tensor(image)), TensorCategory(label)


def _centre_crop(image, size_px: int):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    image = TF.resize(image, round(size_px / CENTER_CROP_FRAC), InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(image, [size_px, size_px])


def build_dataloaders(
    folder: ImageFolder,
    size_px: int,
    batch_size: int,
    *,
    workers: int,
    device,
    crops: CropOptions = CropOptions(),
    rank: int = 0,
    world_size: int = 1,
    copies: Sequence[tuple[str, int, int] | None] | None = None,
) -> DataLoaders:
    """fastai DataLoaders: random-resized-crop + flip for training, resize + centre crop for
    validation, both normalised with ImageNet statistics on ``device``. The training loader
    is a :class:`~trdcli.data.sized_loader.SizedBatchesDL`: ``TRDCallback`` can give it a size per
    batch; with ``draft`` it decodes JPEGs at reduced scale where the crop allows.

    ``batch_size`` is the global batch: with ``world_size`` ranks each trains on its
    ``batch_size / world_size`` share of every global batch, and validates on every image.
    """
    from fastai.data.core import DataLoaders

    if batch_size > len(folder.train):
        raise ConfigError(f"`batch_size` {batch_size} is larger than the {len(folder.train)} training images")
    local_batch = batch_size // world_size
    train_dl = image_dataloader(
        folder.train, size_px, local_batch, True, workers=workers, device=device, crops=crops, rank=rank,
        world_size=world_size, copies=copies,
    )  # fmt: skip
    # Validation has no gradients to keep, so it can take twice the batch in the same memory.
    valid_dl = image_dataloader(folder.valid, size_px, local_batch * 2, False, workers=workers, device=device)
    dls = DataLoaders(train_dl, valid_dl, device=device)
    dls.c = folder.num_classes
    dls.vocab = folder.classes
    return dls


def image_dataloader(
    items: Sequence[tuple[Path, int]],
    size_px: int,
    batch_size: int,
    train: bool,
    *,
    workers: int,
    device,
    crops: CropOptions = CropOptions(),
    rank: int = 0,
    world_size: int = 1,
    copies: Sequence[tuple[str, int, int] | None] | None = None,
):
    """A fastai DataLoader of normalised image batches: training crops (shuffled, last partial
    batch dropped; a :class:`~trdcli.data.sized_loader.SizedBatchesDL`, JPEGs decoded at reduced
    scale with ``draft``) or evaluation crops (in order, every image, decoded in full)."""
    from fastai.data.core import TfmdDL
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.vision.core import imagenet_stats

    from trdcli.data.sized_loader import SizedBatchesDL

    shard = {"rank": rank, "world_size": world_size} if train else {}
    return (SizedBatchesDL if train else TfmdDL)(
        ImageItems(items, size_px, train, crops, copies),
        **shard,
        bs=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        after_batch=[IntToFloatTensor(), Normalize.from_stats(*imagenet_stats, cuda=False)],
        device=device,
        # Pinned host memory lets the copy to the GPU run asynchronously (to_device, non_blocking).
        pin_memory=_on_cuda(device),
        # No persistent_workers: fastai starts a new worker iterator every pass, and each pass's
        # shuffled order (and, on the training loader, the size of every step) is decided in the
        # main process and handed to the workers as they start. Workers that lived across passes
        # would need a channel for each pass's plan; until then the flag was a promise it did not keep.
    )


def _on_cuda(device) -> bool:
    import torch

    return device is not None and torch.device(device).type == "cuda"


def default_workers(processes_here: int = 1) -> int:
    """Data-loading processes of one training process: its share of the cores, less one for
    its training loop, at most 16. ``processes_here``: training processes on this machine
    (a distributed run's ranks on one node share its cores).

    On a GPU a step at half resolution trains 3-4x as many images per second as a full one,
    while its images cost a worker about as much (docs/benchmarks.md: 2.58 against 2.32 ms
    on ImageNet-size photos; 1.58 with direct crops), so reduced steps need several times
    the workers full ones do: the cap is twice the usual 8.
    """
    return max(0, min((os.cpu_count() or 1) // processes_here - 1, 16))
