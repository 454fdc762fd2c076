"""A :class:`~trdcli.core.recipes.Recipe` as fastai's parts: the optimizer, the loss, weight decay
kept off one-dimensional parameters, and mixup or cutmix."""

from __future__ import annotations

from functools import partial

import torch
from fastai.callback.core import Callback
from fastai.callback.mixup import CutMix, MixHandler, MixUp

from trdcli.core.recipes import Recipe

# SGD's momentum where a recipe gives none: every ImageNet SGD recipe trd knows uses 0.9 (torch's
# default, 0, is plain gradient descent).
DEFAULT_SGD_MOMENTUM = 0.9


def opt_func(recipe: Recipe):
    """fastai's optimizer for ``recipe.opt``; the Learner's ``wd`` sets the decay itself."""
    from fastai.optimizer import SGD, Adam, Lamb, RAdam, ranger

    if recipe.opt == "sgd":
        # Coupled (L2) decay, added to the gradient before momentum: torch.optim.SGD's.
        momentum = DEFAULT_SGD_MOMENTUM if recipe.momentum is None else recipe.momentum
        return partial(SGD, mom=momentum, decouple_wd=False)
    mom = {} if recipe.momentum is None else {"mom": recipe.momentum}  # None: the optimizer's own default
    build = {"adam": Adam, "adamw": Adam, "radam": RAdam, "lamb": Lamb, "ranger": ranger}[recipe.opt]
    return partial(build, decouple_wd=recipe.opt != "adam", **mom)


def loss_func(recipe: Recipe):
    """Cross-entropy, label-smoothed as ``torch.nn.CrossEntropyLoss(label_smoothing=...)`` is."""
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat

    if recipe.label_smoothing:
        return LabelSmoothingCrossEntropyFlat(eps=recipe.label_smoothing)
    return CrossEntropyLossFlat()


def recipe_callbacks(recipe: Recipe) -> list[Callback]:
    """The callbacks a recipe adds to the Learner: the weight-decay filter, mixup and/or cutmix."""
    cbs: list[Callback] = [] if recipe.wd_norm_bias else [NoDecayOnNormAndBias()]
    if recipe.mixup and recipe.cutmix:
        cbs.append(MixUpOrCutMix(recipe.mixup, recipe.cutmix))
    elif recipe.mixup:
        cbs.append(MixUp(recipe.mixup))
    elif recipe.cutmix:
        cbs.append(CutMix(recipe.cutmix))
    return cbs


class NoDecayOnNormAndBias(Callback):
    """Weight decay off every one-dimensional parameter (normalisation layers' weights and biases, every
    bias: timm's rule), set on the optimizer each fit (after fastai creates it, and after a resumed run
    loads its state)."""

    order = -20

    def before_fit(self):
        if self.learn.opt is None:
            return
        # The optimizer's own parameters: a validation of another model (the EMA's) leaves them as they are.
        for p, _, state, _ in self.learn.opt.all_params():
            if p.ndim <= 1:
                state["do_wd"] = False


class MixUpOrCutMix(MixHandler):
    """Each training batch mixed up (alpha ``mixup``) or cut-mixed (alpha ``cutmix``), with even chance:
    timm's ``Mixup`` with both alphas and its switch probability 0.5. Runs after TRD has chosen the
    step's size, so it mixes the batch at the size it trains at."""

    def __init__(self, mixup: float, cutmix: float):
        super().__init__(1.0)
        self.mixup, self.cutmix = MixUp(mixup), CutMix(cutmix)

    def before_batch(self):
        chosen = self.cutmix if torch.rand(()) < 0.5 else self.mixup
        chosen.learn, chosen.stack_y = self.learn, self.stack_y
        chosen.before_batch()
        self.lam, self.yb1 = chosen.lam, chosen.yb1
