"""Runs that cannot crash, lie or be lost: the failure modes found by trying trd as a new user would,
each with a test that failed before its fix (issue 18). The multi-process ones live in test_distributed."""

from __future__ import annotations

import pytest
from fastai.callback.core import Callback
from typer.testing import CliRunner

from trdcli.cli import app as cli

runner = CliRunner()


def test_a_plan_too_long_to_work_out_is_one_line_not_a_memory_error():
    # 1000 images of batch 64 for 1e9 epochs: 1.5e10 steps, a numpy MemoryError traceback once; plans
    # no longer hold a step's entry each (test_cost.py), and the limit left is the time to plan.
    args = ["estimate-cost", "--arch", "resnet18", "--images", "1000", "--epochs", "1000000000"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == (
        "error: a run of 15,000,000,000 optimizer steps (1000000000 --epochs of 15) is more than the "
        "1,000,000,000 steps trd plans (about a minute of planning)"
    )


def test_recalibration_measures_the_network_evaluation_runs():
    import torch
    from torch import nn

    from trdcli.callbacks.batchnorm import recalibrate_batchnorm

    # Dropout before BatchNorm: in training mode it would rescale and zero half the inputs, and the
    # variance BatchNorm learned would be about twice the one evaluation feeds it.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(3))
    batches = [(torch.randn(8, 3, 4, 4) * 2 + 1,) for _ in range(3)]
    assert recalibrate_batchnorm(model, batches, max_batches=3) == 24
    # momentum None: the running statistics are the mean over batches of each batch's (unbiased) statistics.
    means = torch.stack([b[0].mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    variances = torch.stack([b[0].transpose(0, 1).reshape(3, -1).var(dim=1) for b in batches]).mean(0)
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, means)
    torch.testing.assert_close(bn.running_var, variances)
    assert model.training and model[0].training  # the model's own mode is restored


def test_the_memory_check_counts_half_precision_activations_under_autocast():
    import torch.nn as nn

    from trdcli.run.memory import estimate_step_memory

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())
    mixed = estimate_step_memory(model, px=4, batch_size=10, mixed_precision=True)
    # The conv's input (3 x 4 x 4) and the ReLU's output (8 x 4 x 4) per image at 2 bytes each (float32:
    # 4, which refused runs that fit); weights, gradients and Adam's moments stay float32.
    assert mixed.activation_bytes == 10 * (3 * 16 + 8 * 16) * 2
    assert mixed.parameter_bytes == 4 * (8 * 3 * 3 * 3) * 4


def _mixup_weights(seed: int) -> list:
    import torch
    from fastai.callback.core import Callback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from helpers import tensor_dls, tiny_cnn

    from trdcli.callbacks.regularisation import StageRegularisation
    from trdcli.callbacks.trd import TRDCallback
    from trdcli.core.schedules import StagedSchedule

    schedule = StagedSchedule(stages=1, mixup_alpha=(0.4, 0.4), dropout=(0.0, 0.0))
    regularise, seen = StageRegularisation(schedule, seed), []

    class Record(Callback):
        order = 0

        def before_batch(self):
            if self.training:
                seen.append(regularise.lam.clone())

    torch.manual_seed(0)
    learn = Learner(
        tensor_dls(n_train=16, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(schedule=schedule), regularise, Record()],
    )  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    return seen


def test_every_seed_draws_its_own_mixup():
    import torch

    # StagedSchedule has no seed: every run mixed with seed 0's weights whatever its --seed.
    first, again, other = _mixup_weights(0), _mixup_weights(0), _mixup_weights(1)
    assert len(first) == 2 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_resumed_loader_shuffles_its_epoch_as_the_uninterrupted_one_did(tmp_path):
    import torch
    from helpers import make_image_folder

    from trdcli.data.folders import scan_image_folder
    from trdcli.data.loaders import image_dataloader

    folder = scan_image_folder(make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48))

    def loader():
        torch.manual_seed(0)  # a resumed run seeds as a new one does: fastai's own shuffle restarted
        return image_dataloader(folder.train, 32, 4, True, workers=0, device=torch.device("cpu"))

    uninterrupted = loader()
    orders = []
    for epoch in (0, 1):
        uninterrupted.seed_next_pass(3, epoch)
        orders.append(list(uninterrupted.get_idxs()))
    resumed = loader()
    resumed.seed_next_pass(3, 1)
    assert list(resumed.get_idxs()) == orders[1] != orders[0]
    assert sorted(orders[1]) == sorted(orders[0]) == list(range(24))  # every image of the 24, once a pass


def _tiny_run(tmp_path, name: str, **overrides):
    from helpers import make_image_folder

    from trdcli.core.schedules import TRDSchedule
    from trdcli.run.config import TrainConfig

    data = tmp_path / "data"
    if not data.exists():
        make_image_folder(data, n_train=8, n_valid=2, px=48)
    fields = dict(
        data=data, arch="resnet18", epochs=2, size_px=64, batch_size=8, workers=0, out_dir=tmp_path / name,
        schedule=TRDSchedule(32, until=1.0, prob=0.5, seed=2),
    )  # fmt: skip
    return TrainConfig(**{**fields, **overrides})


@pytest.mark.slow
def test_a_run_stopped_after_its_last_checkpoint_is_finished_by_resume(tmp_path):
    import json
    from dataclasses import replace

    from trdcli.run.train import train

    config = _tiny_run(tmp_path, "run")
    train(config)
    finished = json.loads((tmp_path / "run" / "run.json").read_text())
    # What a kill during recalibration, the final validation or the save leaves: the checkpoint of the
    # last epoch and no run files. `--resume` said the run had finished, and nothing could finish it.
    for name in ("run.json", "model.pth"):
        (tmp_path / "run" / name).unlink()
    result = train(replace(config, resume=tmp_path / "run"))
    again = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (tmp_path / "run" / "model.pth").is_file() and [r["epoch"] for r in result.history] == [0, 1]
    # Recalibration draws its pass from the run's seed, so it measures what the first process would have.
    for key in ("metrics", "steps_by_px", "train_flops", "bn_recalibration_flops", "compute_fraction"):
        assert again[key] == finished[key], key


def test_the_divergence_rule_by_hand():
    from trdcli.core.divergence import DivergenceWatch

    watch = DivergenceWatch(num_classes=10)
    fired = [watch.update(loss) for loss in [2.0] * 10 + [1000.0] * 40]
    # The first 1000 lifts the debiased average to ~100 at once, far above 4 x 2.0 and ln(10) = 2.30:
    # the 20th step above in a row is step index 29.
    assert fired.index(True) == 29 and not any(fired[:29])
    # A run that learned (0.05) and rises sixfold when its full-resolution tail starts: below chance, no alarm.
    late = DivergenceWatch(num_classes=10)
    assert not any(late.update(loss) for loss in [2.3] * 5 + [0.05] * 300 + [0.3] * 300)
    # Early instability that settles within 19 steps is not divergence either.
    wobbly = DivergenceWatch(num_classes=10)
    assert not any(wobbly.update(loss) for loss in [2.3] * 5 + [50.0] * 3 + [2.0] * 200)


@pytest.mark.slow
def test_a_diverging_run_stops_with_its_learning_rate_named(tmp_path):
    import pytest

    from trdcli.core.errors import TrainingDiverged
    from trdcli.core.schedules import ConstantSchedule
    from trdcli.run.train import train

    # lr 9 on a small folder: the loss went to 2,703 then 6,374, top-1 at chance, and exit 0 before.
    config = _tiny_run(tmp_path, "run", lr=9.0, batch_size=4, epochs=5, schedule=ConstantSchedule())
    with pytest.raises(TrainingDiverged) as info:
        train(config)
    message = str(info.value)
    assert "the training loss diverged" in message and "peak `lr` 9" in message and "a lower `lr`" in message
    assert (tmp_path / "run" / "checkpoint.json").is_file() and not (tmp_path / "run" / "run.json").exists()


def test_the_final_loss_rule_by_hand():
    import math

    from trdcli.core.divergence import ended_far_above_chance

    # 10 x chance: 6.93 for 2 classes, 23.0 for 10; a non-finite loss is never a trained model.
    assert ended_far_above_chance(1209.0, 2) and ended_far_above_chance(6.94, 2)
    assert not ended_far_above_chance(6.93, 2) and not ended_far_above_chance(2.58, 10)
    assert ended_far_above_chance(math.inf, 10) and ended_far_above_chance(math.nan, 10)


@pytest.mark.slow
def test_a_short_run_that_diverges_says_so_with_its_learning_rate(tmp_path):
    import json

    from helpers import make_image_folder

    # The case as a user met it: 32 images of 2 classes, 12 steps at lr 9, too short for the watch's
    # 20 steps; it ended with train loss 1,209 (chance ln 2 = 0.69), top-1 at chance, exit 0 and no word.
    # Then it said so in a warning and still exited 0, so `trd train ... && deploy` shipped the guess:
    # now exit 1, as a divergence caught mid-run, with the run directory and its figures kept.
    data = make_image_folder(tmp_path / "data", classes=("a", "b"), n_train=16, n_valid=4, px=48)
    args = ["train", str(data), "--arch", "resnet18", "--size", "64", "--batch-size", "8", "--epochs", "3"]
    args += ["--lr", "9", "--workers", "0", "--out", str(tmp_path / "run"), "--json"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: the run diverged (its final training loss is far above chance); {tmp_path / 'run'} keeps its figures"
    )
    payload = json.loads(result.stdout)
    assert payload["diverged"].startswith("the run diverged") and (tmp_path / "run" / "model.pth").exists()
    final_loss = payload["history"][-1]["train_loss"]
    assert final_loss > 10 * 0.6931  # the run did diverge: the warning must follow from it
    (warning,) = [w for w in payload["warnings"] if w.startswith("the run diverged")]
    assert "peak `lr` was 9" in warning and "ln 2 = 0.69" in warning
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warnings"] == payload["warnings"]


def test_ranks_that_hold_another_plan_stop_before_the_epoch(monkeypatch):
    import pytest
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from helpers import tensor_dls, tiny_cnn

    import trdcli.run.callbacks as callbacks
    from trdcli.callbacks.trd import TRDCallback
    from trdcli.run.distributed import Ranks

    # The other rank's answer, as all_gather_object would bring it: its schedule has another seed.
    def gathered(plan, ranks):
        epoch, n_epoch, steps, schedule = plan
        return [plan, (epoch, n_epoch, steps, {**schedule, "seed": schedule["seed"] + 1})]

    monkeypatch.setattr(callbacks, "gathered", gathered)
    learn = Learner(
        tensor_dls(n_train=16, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32, prob=0.5), callbacks.RanksAgreeOnPlan(Ranks(0, 2))],
    )  # fmt: skip
    counter = StepCounter()
    learn.add_cb(counter)
    plan_differs = pytest.raises(RuntimeError, match=r"ranks \[1\] hold another plan for epoch 1 than rank 0")
    with plan_differs, learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert counter.steps == 0  # not one step trained on a plan the ranks do not share


class StepCounter(Callback):
    def __init__(self):
        self.steps = 0

    def after_batch(self):
        self.steps += 1
