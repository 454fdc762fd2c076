"""BatchNorm modes for reduced steps: what each promises about statistics, parameters and evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from helpers import tensor_dls, tiny_cnn

from trdcli.callbacks.batchnorm import (
    PrivateBatchNorm,
    full_resolution_model,
    private_batchnorms,
    recalibrate_batchnorm,
    use_private_batchnorm,
)
from trdcli.callbacks.trd import TRDCallback
from trdcli.core.errors import ConfigError
from trdcli.run.flops_cache import arch_flops


def test_recalibrated_statistics_are_the_mean_over_the_batches():
    torch.manual_seed(0)
    model = tiny_cnn()
    batches = [(torch.randn(8, 3, 32, 32) * 3 + 2,) for _ in range(3)]
    images = recalibrate_batchnorm(model, batches, max_batches=3)
    assert images == 24
    with torch.no_grad():
        outputs = [model[0](b[0]) for b in batches]  # what the first BatchNorm saw
    # momentum=None: the running mean is the plain mean of the batch means, and the running
    # variance the plain mean of the batch (unbiased) variances.
    expected_mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outputs]).mean(0)
    expected_var = torch.stack([o.transpose(0, 1).flatten(1).var(dim=1) for o in outputs]).mean(0)
    assert torch.allclose(model[1].running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, expected_var, rtol=1e-4)


def test_private_batchnorm_copies_every_layer_once():
    model = tiny_cnn()
    original = model[1].weight.detach().clone()
    assert use_private_batchnorm(model) == 2
    assert use_private_batchnorm(model) == 0  # idempotent
    assert isinstance(model[1], PrivateBatchNorm) and len(private_batchnorms(model)) == 2
    assert torch.equal(model[1].full.weight, original) and torch.equal(model[1].reduced.weight, original)
    assert model[1].full.weight is not model[1].reduced.weight


class StepProbe(Callback):
    """Per training step: its px, and which BatchNorm copy got gradients and new statistics."""

    order = -4  # after TRDCallback has chosen the resolution

    def __init__(self):
        self.steps = []

    def before_batch(self):
        if self.training:
            bn = self.learn.model[1]
            self._before = (bn.full.running_mean.clone(), bn.reduced.running_mean.clone())

    def after_backward(self):
        bn = self.learn.model[1]
        full_mean, reduced_mean = self._before
        self.steps.append(
            {
                "px": self.learn.xb[0].shape[-1],
                "full_grad": bn.full.weight.grad is not None and bool(bn.full.weight.grad.abs().sum() > 0),
                "reduced_grad": bn.reduced.weight.grad is not None and bool(bn.reduced.weight.grad.abs().sum() > 0),
                "full_stats_moved": not torch.equal(bn.full.running_mean, full_mean),
                "reduced_stats_moved": not torch.equal(bn.reduced.running_mean, reduced_mean),
            }
        )


def _private_learner(**trd_kwargs):
    torch.manual_seed(0)
    probe = StepProbe()
    trd = TRDCallback(low_res=32, until=1.0, prob=0.5, seed=3, bn="private", **trd_kwargs)
    learn = Learner(tensor_dls(n_train=64, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[trd, probe])
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    return learn, probe


@pytest.mark.slow
def test_reduced_steps_train_and_update_only_their_private_copy():
    learn, probe = _private_learner()
    reduced = [s for s in probe.steps if s["px"] == 32]
    full = [s for s in probe.steps if s["px"] == 64]
    assert len(reduced) + len(full) == 16 and reduced and full
    for step in reduced:
        assert step["reduced_grad"] and step["reduced_stats_moved"]
        assert not step["full_grad"] and not step["full_stats_moved"]
    for step in full:
        assert step["full_grad"] and step["full_stats_moved"]
        assert not step["reduced_grad"] and not step["reduced_stats_moved"]


def test_evaluation_and_the_saved_weights_use_the_full_resolution_copy():
    learn, _ = _private_learner()
    model = learn.model.eval()
    assert not any(layer.use_reduced for layer in private_batchnorms(model))
    plain = tiny_cnn()
    plain.load_state_dict(full_resolution_model(model).state_dict())  # the architecture's own layout
    probe = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(probe), plain.eval()(probe), atol=1e-6)
        model[1].use_reduced = True  # the reduced copy really is different after training
        assert not torch.allclose(model(probe), plain(probe), atol=1e-4)
        model[1].use_reduced = False


def test_recalibration_at_the_end_of_fit_touches_only_the_full_copies():
    learn, _ = _private_learner(bn_recalibrate=2)
    assert learn.recalibrate_bn.images == 16
    bn = learn.model[1]
    assert bn.full.momentum == 0.1 and bn.full.num_batches_tracked == 2  # reset, then 2 batches
    assert bn.reduced.num_batches_tracked > 2  # left as training made it


def test_private_mode_needs_the_callback_at_creation():
    learn = Learner(tensor_dls(n_train=16, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat())
    learn.add_cb(TRDCallback(low_res=32, bn="private"))
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match="needs the callback when the Learner"):
        learn.fit(1)


@pytest.mark.parametrize(("kwargs", "message"), [({"bn": "split"}, "`bn` must be one of shared, private")])
def test_bad_bn_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TRDCallback(low_res=32, **kwargs)


@pytest.mark.slow
def test_a_real_private_run_recalibrates_counts_it_and_saves_plain_weights(tmp_path):
    from helpers import make_image_folder

    from trdcli.core.schedules import TRDSchedule
    from trdcli.run.config import TrainConfig
    from trdcli.run.rundir import load_model
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(
        data=data,
        epochs=1,
        size_px=64,
        batch_size=8,
        workers=0,
        schedule=TRDSchedule(32, until=1.0, prob=0.5),
        bn_mode="private",
        bn_recalibrate=2,
        out_dir=tmp_path / "r",
    )
    result = train(config)
    assert not any(isinstance(m, PrivateBatchNorm) for m in load_model(tmp_path / "r").modules())
    # 2 batches of 8 images forward at 64 px: the recalibration's compute, counted and saved.
    recal_flops = 16 * arch_flops("resnet18", 3).at(64).forward_flops
    assert result.compute.recalibration_flops == recal_flops
    saved = json.loads((tmp_path / "r" / "run.json").read_text())
    assert saved["bn_recalibration_flops"] == recal_flops
    # docs/method.md, "Compute": the run's compute is its steps and the recalibration, against the baseline.
    assert saved["compute_fraction"] == (saved["train_flops"] + recal_flops) / saved["baseline_train_flops"]
    assert saved["train_compute_fraction"] == saved["train_flops"] / saved["baseline_train_flops"]
    assert saved["config"]["bn_mode"] == "private"


def test_the_default_recipe_recalibrates_only_after_reduced_steps():
    from trdcli.core.presets import get_preset
    from trdcli.core.schedules import TRDSchedule

    trd = TRDCallback(low_res=32)
    assert trd.schedule == TRDSchedule(32, until=1.0, prob=0.9, seed=0)  # the spread reading, by default
    learn = Learner(tensor_dls(n_train=96, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[trd])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert learn.recalibrate_bn.images == 8 * 8  # 8 batches of 8, by default
    baseline = Learner(
        tensor_dls(n_train=96, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(schedule=get_preset("baseline"))],
    )
    with baseline.no_bar(), baseline.no_logging():
        baseline.fit(1)
    assert baseline.recalibrate_bn.images == 0  # nothing was reduced: nothing to correct
    off = Learner(
        tensor_dls(n_train=96, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32, bn_recalibrate=0)],
    )
    with off.no_bar(), off.no_logging():
        off.fit(1)
    assert off.recalibrate_bn.images == 0


def test_the_batchnorm_callbacks_work_on_their_own_beside_a_trd_callback():
    # A notebook adds them itself: TRDCallback then adds no second copy of either.
    from trdcli.callbacks.batchnorm import PrivateBatchNormCallback, RecalibrateBatchNorm

    recal, private = RecalibrateBatchNorm(batches=3), PrivateBatchNormCallback()
    trd = TRDCallback(low_res=32, until=0.5)
    learn = Learner(
        tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[trd, recal, private]
    )
    assert sum(isinstance(cb, RecalibrateBatchNorm) for cb in learn.cbs) == 1
    assert len(private_batchnorms(learn.model)) == 2  # tiny_cnn's two BatchNorm layers, each given a copy
    with learn.no_bar(), learn.no_logging():
        learn.fit(2)
    assert learn.recalibrate_bn is recal and recal.images == 3 * 8  # its own 3 batches, not the default 8
    reduced = [r for r in trd.records if r.px == 32]
    assert len(reduced) == 6  # the window: the first half of 2 x 6 steps
    assert all(not layer.use_reduced for layer in private_batchnorms(learn.model))  # back to shared after the fit


def test_recalibration_alone_without_trd_recalibrates_only_when_told():
    from trdcli.callbacks.batchnorm import RecalibrateBatchNorm

    told = Learner(tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
                   cbs=[RecalibrateBatchNorm(2)])  # fmt: skip
    default = Learner(tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
                      cbs=[RecalibrateBatchNorm()])  # fmt: skip
    for learn in (told, default):
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
    assert told.recalibrate_bn.images == 16 and default.recalibrate_bn.images == 0  # no TRD: no step was reduced


def test_validating_after_the_fit_does_not_recalibrate_again():
    # fastai's validate() and get_preds() send before_fit and after_fit with no training pass
    # between them; told to recalibrate on 2 batches, the callback must still do it once per fit.
    learn = Learner(
        tensor_dls(n_train=48, bs=8, px=64),
        tiny_cnn(),
        loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32, until=0.5, bn_recalibrate=2)],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    stats = [m.running_mean.clone() for m in learn.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with learn.no_bar():
        learn.validate()
        learn.get_preds()
    assert learn.recalibrate_bn.images_by_fit == {0: 16}
    after = [m.running_mean for m in learn.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after, strict=True))
    assert learn.trd.summary().recalibration_flops == 16 * learn.trd.flops.at(64).forward_flops


def _eval_view_channel_means(paths, px: int) -> torch.Tensor:
    """Per-channel mean of the images as validation sees them, normalised: torchvision's own transforms,
    not trd's loader (resize the short side to px / 0.875, centre-crop px, ImageNet statistics)."""
    from PIL import Image
    from torchvision import transforms as T

    view = T.Compose([
        T.Resize(round(px / 0.875), antialias=True), T.CenterCrop(px), T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])  # fmt: skip
    return torch.stack([view(Image.open(p).convert("RGB")).mean(dim=(1, 2)) for p in paths]).mean(0)


@pytest.mark.parametrize("view", ["test", "train"])
def test_recalibration_on_the_evaluation_view_sees_what_validation_sees(tmp_path, view):
    # BatchNorm first: its recalibrated running mean is the mean of the images it was shown, whatever the
    # weights. 3 batches of 6 cover all 18 training images, so the mean of the batch means is theirs.
    from helpers import make_image_folder

    from trdcli.callbacks.batchnorm import RecalibrateBatchNorm
    from trdcli.data.folders import scan_image_folder
    from trdcli.data.loaders import build_dataloaders

    folder = scan_image_folder(make_image_folder(tmp_path / "d", n_train=6, n_valid=2, px=48))
    dls = build_dataloaders(folder, 32, 6, workers=0, device="cpu")
    model = torch.nn.Sequential(
        torch.nn.BatchNorm2d(3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3)
    )
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=[RecalibrateBatchNorm(3, view=view)])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr=0.0)
    assert learn.recalibrate_bn.images == 18 and dls.train.dataset.train  # the training view is back
    expected = _eval_view_channel_means([path for path, _ in folder.train], 32)
    gap = (model[0].running_mean - expected).abs().max().item()
    if view == "test":
        assert gap < 1e-4
    else:  # random-resized crops of 35-100% of each image: not the validation view's statistics
        assert gap > 1e-3


def test_recalibration_on_the_evaluation_view_needs_trds_image_items():
    from trdcli.callbacks.batchnorm import RecalibrateBatchNorm

    learn = Learner(
        tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[RecalibrateBatchNorm(2, view="test")],
    )  # fmt: skip
    needs_items = "bn_recal_view='test' needs a training loader of trd's image items"
    with pytest.raises(ConfigError, match=needs_items), learn.no_bar(), learn.no_logging():
        learn.fit(1)
    with pytest.raises(ConfigError, match="`bn_recal_view` must be one of train, test, got 'val'"):
        RecalibrateBatchNorm(2, view="val")


@pytest.mark.slow
@pytest.mark.parametrize("view", ["train", "test"])
def test_trd_train_recalibrates_on_the_view_its_config_names(tmp_path, monkeypatch, view):
    from helpers import make_image_folder

    import trdcli.callbacks.batchnorm as batchnorm
    from trdcli.core.schedules import TRDSchedule
    from trdcli.plan.setting import Setting
    from trdcli.run.config import TrainConfig
    from trdcli.run.train import train

    entered = []
    real = batchnorm.evaluation_view
    monkeypatch.setattr(batchnorm, "evaluation_view", lambda loader: entered.append(loader) or real(loader))
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    recipe = TrainConfig(data=data, epochs=1, size_px=64, batch_size=8, workers=0, lr=1e-3, check_images=False)
    # The way trd compare builds it: a setting's key reaches the run's config, and the run's callback.
    config = Setting("s", low_res=32, bn_recal_view=view).config(recipe, 0, tmp_path / "run")
    assert config.bn_recal_view == view and config.schedule == TRDSchedule(32, seed=0)
    result = train(config)
    assert len(entered) == (1 if view == "test" else 0) and result.compute.recalibration_flops > 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["bn_recal_view"] == view


def test_a_model_with_batchnorm_and_layernorm_recalibrates_its_batchnorm_only():
    from trdcli.callbacks.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 6 * 6))
    layer_norm = {k: v.clone() for k, v in model[3].state_dict().items()}
    images = [(torch.randn(4, 3, 8, 8) * 3 + 2,) for _ in range(2)]
    assert recalibrate_batchnorm(model, images, 2) == 8
    assert int(model[1].num_batches_tracked) == 2  # re-estimated on both batches
    assert all(torch.equal(v, model[3].state_dict()[k]) for k, v in layer_norm.items())


def test_batchnorm_options_are_checked_by_one_rule_wherever_they_are_given():
    from trdcli.callbacks.batchnorm import RecalibrateBatchNorm
    from trdcli.callbacks.trd import trd_callbacks
    from trdcli.plan.setting import Setting
    from trdcli.run.config import TrainConfig

    for make in (lambda: TrainConfig(data=".", bn_recalibrate=-1), lambda: RecalibrateBatchNorm(-1),
                 lambda: trd_callbacks(low_res=32, bn_recalibrate=-1)):  # fmt: skip
        with pytest.raises(ConfigError, match=r"`bn_recalibrate` must be 0 or more batches, got -1"):
            make()
    with pytest.raises(ConfigError, match=r"`setting` s: bn_recal_view must be one of train, test, got 'val'"):
        Setting("s", bn_recal_view="val")
    with pytest.raises(ConfigError, match=r"`bn` must be one of shared, private, got 'split'"):
        trd_callbacks(low_res=32, bn="split")
    with pytest.raises(ConfigError, match=r"`bn_mode` must be one of shared, private, got 'split'"):
        TrainConfig(data=".", bn_mode="split")
