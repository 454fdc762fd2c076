"""BatchNorm and reduced steps: recalibration at full resolution, and private BatchNorm for reduced steps.

Statistics gathered on reduced-resolution steps differ from those at full resolution (the
FixRes effect, Touvron et al. 2019, arXiv 1906.06423). Two remedies, usable together:

- **Recalibration** (:func:`recalibrate_batchnorm`): after training, run a few batches at
  full resolution through the network in training mode, without gradients, with the running
  averages reset and accumulated as a plain mean (``momentum=None``), so evaluation uses
  statistics of what it sees (as FixRes and Mix&Match do). Its forward passes are counted.
- **Private BatchNorm** (:func:`use_private_batchnorm`): every BatchNorm layer gets a second,
  private copy (affine parameters and running statistics) that reduced steps use, while
  convolutions are shared; evaluation uses the full-resolution copy. This follows the private
  BatchNorms of resolution-switchable networks (Wang et al. 2020, "Resolution Switchable
  Networks for Runtime Efficient Image Recognition", arXiv 2007.09558), with two copies (full
  and reduced) rather than one per resolution. Its cost: one more set of BatchNorm parameters
  (well under 1% of a ResNet's), no FLOPs.

Each has its fastai callback: :class:`RecalibrateBatchNorm` and :class:`PrivateBatchNormCallback`.
``TRDCallback`` adds them for its own ``bn`` and ``bn_recalibrate`` arguments; a notebook can add
them to any Learner that trains with a ``TRDCallback``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from fastai.callback.core import Callback
from fastai.callback.schedule import LRFinder
from fastai.learner import SkipToEpoch

from trdcli.core.cost import keeps_running_statistics
from trdcli.core.defaults import DEFAULT_BN_RECAL_VIEW, check_batchnorm_options, recalibration_batches
from trdcli.core.errors import ConfigError, require_positive_int


class PrivateBatchNorm(nn.Module):
    """A BatchNorm layer with a full-resolution copy and a private copy for reduced steps.

    ``use_reduced`` picks the copy; it is False except during a reduced training step, so
    evaluation, recalibration and every full step use ``full``.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.full = bn
        self.reduced = copy.deepcopy(bn)
        self.use_reduced = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.reduced if self.use_reduced else self.full)(x)


def use_private_batchnorm(model: nn.Module) -> int:
    """Give every BatchNorm of ``model`` a private copy for reduced steps, in place; returns how many.

    Call it before the optimizer is built (before creating the fastai ``Learner``), so the
    private parameters are trained too. Calling it twice changes nothing.
    """
    converted = 0
    for parent in list(model.modules()):
        if isinstance(parent, PrivateBatchNorm):
            continue
        for name, child in list(parent.named_children()):
            if keeps_running_statistics(child):
                setattr(parent, name, PrivateBatchNorm(child))
                converted += 1
    return converted


def private_batchnorms(model: nn.Module) -> list[PrivateBatchNorm]:
    return [m for m in model.modules() if isinstance(m, PrivateBatchNorm)]


def use_reduced_batchnorm(layers: Iterable[PrivateBatchNorm], reduced: bool) -> None:
    for layer in layers:
        layer.use_reduced = reduced


def full_resolution_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each private BatchNorm replaced by its full-resolution copy.

    That is the model evaluation uses, in the architecture's own layout: its ``state_dict``
    loads into a freshly built model of the same architecture.
    """
    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PrivateBatchNorm):
                setattr(parent, name, child.full)
    return plain


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers evaluation uses (private reduced-step copies left out)."""
    private = {id(m.reduced) for m in private_batchnorms(model)}
    return [m for m in model.modules() if keeps_running_statistics(m) and id(m) not in private]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable, max_batches: int) -> int:
    """Re-estimate the running mean and variance of every BatchNorm evaluation uses, from up to ``max_batches``.

    ``batches`` yields ``(images, ...)`` tuples at the evaluation resolution. Returns the
    number of images run forward (0 when the model has no BatchNorm).
    """
    require_positive_int("max_batches", max_batches)
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    # A model compiled in place (--compile) recalibrates eagerly: a few batches, and torch's graphs mishandle
    # BatchNorm's cumulative average (momentum None) with only BatchNorm in train mode.
    compiled, model._compiled_call_impl = model._compiled_call_impl, None
    images = 0
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative mean over the recalibration batches
        # Only BatchNorm runs as in training: dropout and stochastic depth stay as evaluation has them,
        # so the statistics are those of the network that is evaluated.
        model.eval()
        for m in layers:
            m.train()
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, list | tuple) else batch
                model(x)
                images += x.shape[0]
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
        model._compiled_call_impl = compiled
    return images


@contextmanager
def evaluation_view(loader) -> Iterator:
    """``loader`` (a training loader of trd's :class:`~trdcli.data.loaders.ImageItems`) delivers the test-time
    view of its images while inside: resized and centre-cropped as validation crops them, unflipped, in the
    pass's shuffled order. Workers start with each pass, so they see the view set here."""
    items = getattr(loader, "dataset", None)
    if not hasattr(items, "train"):
        raise ConfigError(
            "bn_recal_view='test' needs a training loader of trd's image items (trdcli.data.loaders.image_dataloader), "
            f"got a {type(items).__name__}"
        )
    was = items.train
    items.train = False
    try:
        yield loader
    finally:
        items.train = was


def finding_lr(learn) -> bool:
    """Whether ``learn`` is in ``lr_find``, which trd's callbacks leave alone."""
    return any(isinstance(cb, LRFinder) for cb in learn.cbs)


def resumed_past_last_epoch(learn) -> bool:
    """Whether the fit starting is one resumed past its last epoch (fastai's ``SkipToEpoch``): it trains
    nothing now but continues a run that did, and is finished by recalibrating."""
    return any(isinstance(cb, SkipToEpoch) for cb in learn.cbs)


class RecalibrateBatchNorm(Callback):
    """After each fit, BatchNorm statistics re-estimated on ``batches`` full-resolution training batches.

    ``batches=None`` (the default): 8 after a fit in which the Learner's ``TRDCallback``
    reduced a step, none otherwise. ``view``: the training images as training augments them
    ("train"), or as validation sees them ("test": resized, centre-cropped, unflipped; see
    :func:`evaluation_view`). Metrics recorded during the fit predate it:
    ``learn.validate()`` measures the recalibrated model. ``images_by_fit`` counts what it ran
    forward after each fit (on this process), which the ``TRDCallback``'s summary adds to the
    run's compute; ``images`` is their total. ``lr_find`` runs are left alone.
    """

    order = -4  # after ComputeMeter (-4.5), whose counts say whether the fit reduced a step

    def __init__(self, batches: int | None = None, view: str = DEFAULT_BN_RECAL_VIEW):
        super().__init__()
        check_batchnorm_options(bn_recalibrate=batches, bn_recal_view=view)
        self.batches, self.view = batches, view
        self.images_by_fit: dict[int, int] = {}
        self.trained_this_fit = False  # whether the current fit ran a training pass (EMAWeights reads it too)

    @property
    def name(self) -> str:
        return "recalibrate_bn"  # reachable as learn.recalibrate_bn

    @property
    def images(self) -> int:
        return self.images_after()

    def images_after(self, fit: int | None = None) -> int:
        """Images run forward after ``fit`` (every fit's when None), on this process."""
        return sum(n for f, n in self.images_by_fit.items() if fit is None or f == fit)

    def batches_after_fit(self) -> int:
        """Batches it recalibrates on after the current (or last) fit."""
        meter = getattr(self.learn, "compute_meter", None)
        reduced = meter is not None and meter.reduced_in_fit(meter.current_fit)
        return recalibration_batches(self.batches, reduced, bool(batchnorm_layers(self.learn.model)))

    def before_fit(self):
        self.trained_this_fit = resumed_past_last_epoch(self.learn)

    def before_train(self):
        self.trained_this_fit = True

    def after_fit(self):
        # learn.validate() and get_preds send before_fit and after_fit too, with no training pass
        # between them: nothing was trained, so there is nothing to recalibrate.
        batches = self.batches_after_fit() if self.trained_this_fit else 0
        if batches and not finding_lr(self.learn):
            meter = getattr(self.learn, "compute_meter", None)
            images = self.recalibrate(self.learn.model, batches)
            self.images_by_fit[meter.current_fit if meter is not None else 0] = images

    def recalibrate(self, model: nn.Module, batches: int) -> int:
        """Recalibrate ``model`` (the Learner's, or another such as its EMA) on ``batches`` of the training
        loader in this callback's view; returns the images run forward."""
        # Outside the fit the training loader delivers full-resolution batches.
        loader = self.learn.dls.train
        if self.view == "test":
            with evaluation_view(loader):
                return recalibrate_batchnorm(model, loader, batches)
        return recalibrate_batchnorm(model, loader, batches)


class PrivateBatchNormCallback(Callback):
    """Reduced steps train private BatchNorm copies; full steps and evaluation use the shared ones.

    Needs the Learner's ``TRDCallback`` (which says whether a step is reduced) and must be
    there when the Learner is created, so that the optimizer sees the private parameters.
    """

    order = -4  # after TRDCallback (-5) has chosen the step's resolution
    run_valid = False

    def __init__(self):
        super().__init__()
        self._layers: list[PrivateBatchNorm] = []

    def after_create(self):
        use_private_batchnorm(self.learn.model)

    def before_fit(self):
        if finding_lr(self.learn):
            return
        self._layers = private_batchnorms(self.learn.model)
        if not self._layers:
            raise ConfigError(
                "bn='private' needs the callback when the Learner is created (cbs=[TRDCallback(...)]), or "
                "use_private_batchnorm(model) before it, so the optimizer sees the private parameters"
            )
        if getattr(self.learn, "trd", None) is None:
            raise ConfigError("PrivateBatchNormCallback needs a TRDCallback on the same Learner")

    def before_batch(self):
        trd = self.learn.trd
        use_reduced_batchnorm(self._layers, trd.step_px is not None and trd.step_px != trd.full_px)

    def after_batch(self):
        use_reduced_batchnorm(self._layers, False)

    before_validate = after_cancel_fit = after_fit = after_batch
