"""Recipes (issue 41): the optimizer, weight decay, learning-rate schedule, label smoothing, mixup and
cutmix, each checked against a value known without trd: torch's own schedulers and losses, and updates
worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tensor_dls, tiny_cnn

from trdcli.core.errors import ConfigError
from trdcli.core.lr_schedule import OneCycle, TailAnnealed
from trdcli.core.recipes import RECIPES, Recipe, named_recipe
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig

STEPS_PER_EPOCH, EPOCHS = 6, 4  # tensor_dls(48 images, batch 8)
TOTAL = STEPS_PER_EPOCH * EPOCHS


def fit_lrs(recipe: Recipe, peak: float = 0.1, **config) -> list[float]:
    """The rate fastai applied at each step of a real fit under ``recipe``'s schedule."""
    from fastai.learner import Learner

    from trdcli.run.callbacks import lr_scheduler
    from trdcli.run.optim import loss_func, opt_func

    learn = Learner(tensor_dls(n_train=48, bs=8), tiny_cnn(), loss_func=loss_func(recipe), opt_func=opt_func(recipe))
    learn.fit(EPOCHS, peak, cbs=lr_scheduler(recipe.lr_schedule_for(EPOCHS, **config), peak))
    return [float(lr) for lr in learn.recorder.lrs]


def torch_lrs(make_scheduler, peak: float = 0.1) -> list[float]:
    """The rates torch's own scheduler gives, stepped once per training step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = make_scheduler(opt)
    rates = []
    for _ in range(TOTAL):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


def test_cosine_with_warmup_follows_torchs_linear_warmup_then_cosine():
    recipe = Recipe(opt="sgd", lr_schedule="cosine", warmup_epochs=1)
    warm = STEPS_PER_EPOCH
    expected = torch_lrs(
        lambda opt: torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=TOTAL - warm),
            ],
            milestones=[warm],
        )  # fmt: skip
    )
    assert fit_lrs(recipe) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_the_step_schedule_is_torchs_multistep_at_the_same_epochs():
    recipe = Recipe(opt="sgd", lr_schedule="step", milestones=(1, 3), gamma=0.1)
    steps = [m * STEPS_PER_EPOCH for m in (1, 3)]
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1))
    assert fit_lrs(recipe) == pytest.approx(expected, rel=1e-6)
    # Counted by hand: 0.1 for the first epoch, 0.01 for the next two, 0.001 for the last.
    assert fit_lrs(recipe)[::STEPS_PER_EPOCH] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_the_linear_schedule_is_ffcvs_cyclic_ramp():
    # ffcv-imagenet's get_cyclic_lr: np.interp(epoch, [0, peak_epoch, epochs], [1e-4 * lr, lr, 0]).
    recipe = Recipe(opt="sgd", lr_schedule="linear", warmup_epochs=1, warmup_start_frac=1e-4)
    epochs_at = np.arange(TOTAL) / STEPS_PER_EPOCH
    expected = np.interp(epochs_at, [0, 1, EPOCHS], [1e-4 * 0.1, 0.1, 0])
    assert fit_lrs(recipe) == pytest.approx(list(expected), rel=1e-5, abs=1e-9)


def test_flat_cos_is_fastais_fit_flat_cos_and_constant_is_flat():
    from fastai.callback.schedule import combined_cos

    expected = combined_cos(0.75, 0.1, 0.1, 0.1 / 1e5)
    lrs = fit_lrs(Recipe(lr_schedule="flat-cos"))
    assert lrs == pytest.approx([expected(i / TOTAL) for i in range(TOTAL)], rel=1e-5)
    assert fit_lrs(Recipe(lr_schedule="constant")) == pytest.approx([0.1] * TOTAL)


def test_one_cycle_is_unchanged_and_schedules_momentum():
    curve = Recipe().lr_schedule_for(EPOCHS)
    assert curve == OneCycle() and curve.schedules_momentum
    assert not Recipe(lr_schedule="cosine").lr_schedule_for(EPOCHS).schedules_momentum


def test_the_tail_rate_works_with_every_schedule_that_ends_below_it():
    config = TrainConfig(data=".", size_px=64, schedule=TRDSchedule(32, until=0.75), tail_lr_frac=0.3,
                         recipe=Recipe(lr_schedule="cosine"))  # fmt: skip
    curve = config.lr_curve
    assert isinstance(curve, TailAnnealed)
    # Cosine squeezed into [0, 0.75): at 0.375 half way down; the tail from 0.3 to cosine's end, 0.
    assert curve.lr_frac_at(0.375) == pytest.approx(0.5)
    assert curve.lr_frac_at(0.75) == pytest.approx(0.3)
    assert curve.lr_frac_at(0.875) == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="schedule ends \\(1 of the peak\\), which is not below it"):
        TrainConfig(data=".", size_px=64, schedule=TRDSchedule(32, until=0.75), tail_lr_frac=0.3,
                    recipe=Recipe(lr_schedule="constant"))  # fmt: skip


def test_weight_decay_leaves_norm_and_bias_parameters_alone_counted_by_hand():
    from fastai.learner import Learner

    from trdcli.run.optim import loss_func, opt_func, recipe_callbacks

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, bias=True), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3),
    )  # fmt: skip
    decayed = {id(model[0].weight), id(model[5].weight)}  # the two weight matrices, nothing else
    for wd_norm_bias, expected in ((False, decayed), (True, {id(p) for p in model.parameters()})):
        recipe = Recipe(opt="sgd", wd=1e-4, wd_norm_bias=wd_norm_bias, lr_schedule="constant")
        learn = Learner(tensor_dls(n_train=8, bs=8), model, loss_func=loss_func(recipe), opt_func=opt_func(recipe),
                        wd=recipe.wd, wd_bn_bias=recipe.wd_norm_bias, cbs=recipe_callbacks(recipe))  # fmt: skip
        learn.fit(1, 0.01)
        state = learn.opt.state
        assert {id(p) for p in model.parameters() if state[p].get("do_wd", True)} == expected
        assert learn.opt.hypers[0]["wd"] == 1e-4


def test_one_sgd_step_with_momentum_and_decay_is_the_update_worked_out_by_hand():
    from trdcli.run.optim import opt_func

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = opt_func(Recipe(opt="sgd", momentum=0.9, wd=0.1, lr_schedule="constant"))([p], lr=0.5, wd=0.1)
    p.grad = torch.tensor([0.2, 0.4])
    opt.step()
    # L2 decay joins the gradient: g = 0.2 + 0.1 * 1 = 0.3, 0.4 + 0.1 * -2 = 0.2; the momentum buffer
    # starts as g; p = p - 0.5 * g.
    assert p.detach().tolist() == pytest.approx([1.0 - 0.5 * 0.3, -2.0 - 0.5 * 0.2])
    p.grad = torch.tensor([0.2, 0.4])
    opt.step()
    # g = 0.2 + 0.1 * 0.85 = 0.285 and 0.4 + 0.1 * -2.1 = 0.19; buffer 0.9 * (0.3, 0.2) + g.
    buffer = [0.9 * 0.3 + 0.285, 0.9 * 0.2 + 0.19]
    assert p.detach().tolist() == pytest.approx([0.85 - 0.5 * buffer[0], -2.1 - 0.5 * buffer[1]])


def test_label_smoothing_is_torchs_cross_entropy_with_label_smoothing():
    from trdcli.run.optim import loss_func

    logits, labels = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    ours = loss_func(Recipe(label_smoothing=0.1))(logits, labels)
    assert float(ours) == pytest.approx(float(torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)))
    plain = loss_func(Recipe())(logits, labels)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))


def test_mixup_and_cutmix_mix_the_batch_at_the_size_it_trains_at():
    from fastai.callback.core import Callback
    from fastai.learner import Learner

    from trdcli import TRDCallback
    from trdcli.run.optim import MixUpOrCutMix, loss_func, opt_func, recipe_callbacks

    class Seen(Callback):
        order = 50  # after the mixing

        def __init__(self):
            self.batches = []

        def before_batch(self):
            if self.training:  # the batch's size, and whose loss is in place (a mixing handler's bound lf)
                self.batches.append((self.x.shape[-1], getattr(self.learn.loss_func, "__self__", None)))

    recipe = Recipe(mixup=0.2, cutmix=1.0)
    mixing = recipe_callbacks(recipe)
    assert any(isinstance(cb, MixUpOrCutMix) for cb in mixing)
    seen = Seen()
    trd = TRDCallback(schedule=TRDSchedule(32, until=0.5), bn_recalibrate=0)
    learn = Learner(tensor_dls(n_train=48, bs=8), tiny_cnn(), loss_func=loss_func(recipe), opt_func=opt_func(recipe),
                    cbs=[trd, *mixing, seen])  # fmt: skip
    learn.fit(2, 1e-3)
    # Steps 0-5 reduced to 32 px, 6-11 at 64: each mixed at its own size, with the mixing loss in place.
    assert [px for px, _ in seen.batches] == [32] * 6 + [64] * 6
    assert all(isinstance(handler, MixUpOrCutMix) for _, handler in seen.batches)
    assert learn.loss_func.__class__.__name__ == "CrossEntropyLossFlat"  # restored after training
    # Mixing costs no forward or backward pass: the compute is six steps of 8 images at each size.
    from trdcli.core.cost import count_image_flops

    per_image = {px: count_image_flops(tiny_cnn(), px).train_flops for px in (32, 64)}
    assert trd.summary().train_flops == 6 * 8 * (per_image[32] + per_image[64])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"opt": "sgdd"}, "unknown `opt` 'sgdd': one of sgd, adam, adamw"),
        ({"lr_schedule": "cos"}, "unknown `lr_schedule` 'cos': one of one-cycle, cosine, step"),
        ({"wd": -1e-4}, "`wd` must be 0 or more"),
        ({"label_smoothing": 1.0}, r"`label_smoothing` must be in \[0, 1\)"),
        ({"mixup": -0.1}, "`mixup` must be 0 or more"),
        ({"lr_schedule": "step"}, "the step schedule needs `milestones`"),
        ({"lr_schedule": "one-cycle", "warmup_epochs": 1}, "does not apply to one-cycle"),
        ({"lr_schedule": "cosine", "milestones": (2,)}, "`milestones` are the step schedule's"),
    ],
)
def test_bad_recipe_options_are_one_line_each(options, message):
    with pytest.raises(ConfigError, match=message):
        Recipe(**options)


def test_a_milestone_past_the_runs_end_is_refused():
    with pytest.raises(ConfigError, match="`milestones` 6 is past the run's end \\(5 epochs\\)"):
        TrainConfig(data=".", epochs=5, recipe=Recipe(opt="sgd", lr_schedule="step", milestones=(2, 6)))


def test_named_recipes_state_their_sources_and_scale_the_rate_with_the_batch():
    assert {"fastai", "paper", "torchvision-v1", "ffcv-rn50", "rsb-a3"} <= set(RECIPES)
    assert all(r.source and r.reported for r in RECIPES.values())
    assert named_recipe("fastai").recipe == Recipe()  # today's default, unchanged
    # torchvision: 0.1 per 256 images, so 0.025 at 64 (Goyal et al.'s linear scaling).
    assert named_recipe("torchvision-v1").lr_at(64) == pytest.approx(0.025)
    assert "binary cross-entropy loss (trd trains with cross-entropy)" in named_recipe("rsb-a3").left_out
    with pytest.raises(ConfigError, match="unknown `recipe` 'papr': one of fastai, paper"):
        named_recipe("papr")
    assert math.isclose(named_recipe("paper").recipe.milestones[0], 75)


# --- The command line: --recipe, the options, trd recipes, and a resumed run (parts 2 and 3) ---

import json  # noqa: E402

from helpers import InterruptAfter, make_image_folder  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from trdcli.cli import app as cli  # noqa: E402

runner = CliRunner()


def test_trd_recipes_lists_each_with_its_source_and_what_it_leaves_out():
    result = runner.invoke(cli.app, ["recipes", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(RECIPES)
    assert rows["torchvision-v1"]["options"]["milestones"] == [30, 60] and rows["torchvision-v1"]["epochs"] == 90
    assert "libffcv/ffcv-imagenet" in rows["ffcv-rn50"]["source"]
    assert any("RandAugment" in item for item in rows["rsb-a3"]["left_out"])
    table = runner.invoke(cli.app, ["recipes"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "76.32%" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--opt", "sgdd"], "unknown --opt 'sgdd': one of sgd, adam"),
        (["--recipe", "papr"], "unknown --recipe 'papr': one of fastai, paper"),
        (["--wd", "-0.1"], "--wd must be 0 or more"),
        (["--label-smoothing", "1"], r"--label-smoothing must be in \[0, 1\)"),
        (["--lr-schedule", "step", "--milestones", "1,9"], "--milestones 9 is past the run's end \\(2 epochs\\)"),
        (["--momentum", "0.9"], "does not apply to one-cycle"),
    ],
)
def test_bad_recipe_options_stop_trd_train_in_one_line_before_a_run_directory(tmp_path, args, message):
    import re

    data = make_image_folder(tmp_path / "data", n_train=4, n_valid=2, px=48)
    out = tmp_path / "run"
    result = runner.invoke(cli.app, ["train", str(data), "--size", "64", "--epochs", "2", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert re.search(message, result.output) and "Traceback" not in result.output
    assert not out.exists()


def test_a_recipe_scales_its_rate_and_shape_to_the_run_and_options_override_it():
    from trdcli.core.recipes import resolve_recipe

    paper = resolve_recipe("paper", epochs=30, batch_size=64, lr=None)
    # 0.1 per 256 images -> 0.025 at 64; 300 epochs' milestones 75, 150, 225 -> 7.5, 15, 22.5 at 30.
    assert paper.lr == pytest.approx(0.025) and paper.recipe.milestones == (7.5, 15, 22.5)
    cosine = resolve_recipe("paper", epochs=30, batch_size=64, lr=0.05, lr_schedule="cosine", wd=5e-5)
    assert (cosine.recipe.lr_schedule, cosine.recipe.milestones, cosine.recipe.wd, cosine.lr) == (
        "cosine", (), 5e-5, 0.05,
    )  # fmt: skip
    default = resolve_recipe(None, epochs=None, batch_size=None, lr=None)
    assert (default.recipe, default.epochs, default.batch_size, default.lr) == (Recipe(), 5, 64, None)


def test_a_compare_setting_changes_the_recipe_for_its_runs_only(tmp_path):
    from trdcli.cli.values import parse_setting
    from trdcli.core.recipes import resolve_recipe

    base = TrainConfig(
        data=".", epochs=4, recipe=resolve_recipe("torchvision-v1", epochs=4, batch_size=64, lr=None).recipe
    )
    smoothed = parse_setting("ls:label_smoothing=0.1,low_res=112")
    config = smoothed.config(base, 0, tmp_path / "ls")
    assert config.recipe.label_smoothing == 0.1 and config.recipe.opt == "sgd"
    assert parse_setting("baseline").config(base, 0, tmp_path / "b").recipe == base.recipe
    with pytest.raises(ConfigError, match="`setting` bad: `mixup` must be 0 or more"):
        parse_setting("bad:mixup=-1").recipe_for(base)


@pytest.mark.slow
def test_a_step_schedule_run_stopped_across_a_milestone_resumes_on_the_same_rates(tmp_path):
    from dataclasses import replace

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trdcli.core.errors import RunDirError, TrainingInterrupted
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)  # 24 images: 3 steps an epoch
    recipe = Recipe(opt="sgd", wd=1e-4, lr_schedule="step", milestones=(1,), name="test")
    config = TrainConfig(data=data, epochs=2, size_px=64, batch_size=8, workers=0, lr=0.1, recipe=recipe,
                         log_to=("tensorboard",), out_dir=tmp_path / "run")  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=4))  # past the milestone at step 3; epoch 1 is saved
    with pytest.raises(RunDirError, match="the run used recipe lr_schedule='step', milestones=\\[1\\]"):
        train(replace(config, recipe=replace(recipe, lr_schedule="cosine", milestones=()), resume=tmp_path / "run"))
    train(replace(config, resume=tmp_path / "run"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    last_by_step = {e.step: e.value for e in events.Scalars("trd/lr")}  # the resumed process's, where both ran
    # By hand: 0.1 for epoch 1's three steps, 0.1 x 0.1 from the milestone on.
    assert [last_by_step[s] for s in range(6)] == pytest.approx([0.1] * 3 + [0.01] * 3)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["config"]["recipe"]["milestones"] == [1] and saved["config"]["recipe"]["opt"] == "sgd"


def test_a_compare_rerun_with_another_recipe_does_not_reuse_the_finished_runs(tmp_path):
    from trdcli.plan.compare import _finished_run
    from trdcli.plan.setting import Setting

    setting = Setting("baseline")
    run = {"schedule": json.loads(json.dumps(setting.schedule(0).describe())), "epochs": 2,
           "config": {"recipe": Recipe().describe()}}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert _finished_run(tmp_path, setting, 0, 2, Recipe()) == run  # the same recipe: reused
    with pytest.raises(ConfigError, match="a finished run of another recipe \\(fastai: adamw, one-cycle\\)"):
        _finished_run(tmp_path, setting, 0, 2, named_recipe("paper").recipe)
    del run["config"]  # a run from before recipes: the default one
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert _finished_run(tmp_path, setting, 0, 2, Recipe())["epochs"] == 2
