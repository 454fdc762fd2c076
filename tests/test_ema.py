"""--ema (issue 42, part 3): the moving average is the one worked out by hand, its BatchNorm is
recalibrated with the model's, it is validated, saved, examined by trd eval --ema and resumed."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import InterruptAfter, make_image_folder, tensor_dls, tiny_cnn
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.errors import ConfigError
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig

runner = CliRunner()


@pytest.mark.slow
def test_the_average_is_decay_times_the_last_plus_the_rest_times_the_new_weights():
    from fastai.callback.core import Callback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    from trdcli.callbacks.ema import EMAWeights

    class Weights(Callback):
        order = 10  # after_step after the EMA's update: the weights it averaged

        def __init__(self):
            self.after_each_step = []

        def after_step(self):
            self.after_each_step.append(self.learn.model[-1].weight.detach().clone())

    weights = Weights()
    learn = Learner(tensor_dls(n_train=32, bs=8), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
                    cbs=[EMAWeights(0.5), weights])  # fmt: skip
    learn.fit(1, 1e-2)
    # By hand: the first step's weights, then ema = 0.5 * ema + 0.5 * w after each step.
    expected = weights.after_each_step[0]
    for w in weights.after_each_step[1:]:
        expected = 0.5 * expected + 0.5 * w
    assert len(weights.after_each_step) == 4
    assert torch.allclose(learn.ema.model[-1].weight, expected, atol=1e-7)
    assert not torch.allclose(learn.ema.model[-1].weight, learn.model[-1].weight)


@pytest.mark.slow
def test_the_emas_batchnorm_is_recalibrated_when_the_models_is():
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    from trdcli import TRDCallback
    from trdcli.callbacks.ema import EMAWeights

    trd = TRDCallback(schedule=TRDSchedule(32), bn_recalibrate=3)  # reduced steps, then 3 full-size batches
    learn = Learner(tensor_dls(n_train=48, bs=8), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
                    cbs=[trd, EMAWeights(0.9)])  # fmt: skip
    learn.fit(1, 1e-3)
    # Recalibration resets the statistics and counts the batches it ran: 3 on the model, 3 on the EMA.
    assert int(learn.model[1].num_batches_tracked) == 3
    assert int(learn.ema.model[1].num_batches_tracked) == 3
    # Re-estimated on full-size batches, the EMA's statistics differ from the model's only by its weights.
    assert not torch.equal(learn.ema.model[4].running_mean, learn.model[4].running_mean)


def test_a_decay_outside_0_1_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="`ema` must be a decay in \\(0, 1\\)"):
        TrainConfig(data=".", ema_decay=1.0)
    data = make_image_folder(tmp_path / "data", n_train=4, n_valid=2, px=48)
    result = runner.invoke(cli.app, ["train", str(data), "--ema", "1.5", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "--ema must be a decay in (0, 1)" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_trd_train_validates_saves_resumes_and_evaluates_the_ema(tmp_path):
    from dataclasses import replace

    from trdcli.core.errors import TrainingInterrupted
    from trdcli.run.rundir import load_model
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    run = tmp_path / "run"
    config = TrainConfig(data=data, epochs=2, size_px=64, batch_size=8, workers=0, schedule=TRDSchedule(32),
                         ema_decay=0.9, out_dir=run)  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=4))
    saved_ema = torch.load(run / "checkpoint_ema.pth", weights_only=True)
    assert int(saved_ema["n_averaged"]) == 3  # epoch 1's three steps
    result = train(replace(config, resume=run))
    metrics = json.loads((run / "run.json").read_text())["metrics"]
    assert {"ema_top1", "ema_valid_loss", "top1"} <= set(metrics)
    # The summary names the EMA's top-1 beside the model's.
    from rich.console import Console

    from trdcli.cli.report import fmt_pct, train_summary_table

    console = Console(record=True, width=200)
    console.print(train_summary_table(result))
    assert f"top-1 {fmt_pct(metrics['ema_top1'])} (model_ema.pth" in console.export_text()
    ema, model = load_model(run, ema=True), load_model(run)
    assert not torch.equal(ema.fc.weight, model.fc.weight)
    evaluated = runner.invoke(cli.app, ["eval", str(run), "--ema", "--sizes", "64", "--no-probes", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((run / "ema" / "eval.json").read_text())["sweep"][0]["px"] == 64
    plain = tmp_path / "plain"
    train(replace(config, ema_decay=None, out_dir=plain, epochs=1))
    missing = runner.invoke(cli.app, ["eval", str(plain), "--ema", "--no-probes"])
    assert missing.exit_code == 1 and "trained without an --ema" in missing.output
