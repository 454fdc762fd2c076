"""--precision (issue 42, part 1): bf16 autocast on the CPU really runs in bfloat16; auto, fp16 and the
device checks; recorded in run.json."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_image_folder, tensor_dls, tiny_cnn
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.errors import ConfigError
from trdcli.run.config import TrainConfig
from trdcli.run.precision import DeviceMixedPrecision, resolve_precision

runner = CliRunner()
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_fp32_on_the_cpu_and_bf16_or_fp16_on_cuda_by_what_the_card_has(monkeypatch):
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    # No GPU here: what a card says of itself is mocked, nothing else.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", CUDA) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    assert resolve_precision("auto", CUDA) == "fp16"
    with pytest.raises(ConfigError, match="Tesla V100-SXM2-16GB has no bfloat16; use fp16"):
        resolve_precision("bf16", CUDA)


def test_fp16_on_the_cpu_and_unknown_precisions_are_refused():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="unknown `precision` 'fp8': one of auto, bf16, fp16, fp32"):
        TrainConfig(data=".", precision="fp8")


def test_bf16_autocast_on_the_cpu_computes_in_bfloat16_and_keeps_fp32_weights():
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat

    model = tiny_cnn()
    seen = []
    model[-1].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    learn = Learner(tensor_dls(n_train=16, bs=8), model, loss_func=CrossEntropyLossFlat())
    learn.add_cb(DeviceMixedPrecision(amp_mode="bf16"))
    learn.fit(1, 1e-3)
    # The classifier ran under bfloat16 autocast, in training and in validation; the weights stay fp32.
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in learn.recorder.values[-1])


@pytest.mark.slow
def test_trd_train_records_the_precision_it_ran_and_refuses_fp16_on_the_cpu_before_a_run_directory(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    # 32 px: bf16 convolutions run about 15x slower than fp32 on a CPU without bf16 units (this one).
    args = ["train", str(data), "--size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0"]
    refused = runner.invoke(cli.app, [*args, "--precision", "fp16", "--out", str(tmp_path / "no")])
    assert refused.exit_code == 1 and "--precision fp16 needs a CUDA device" in refused.output
    assert not (tmp_path / "no").exists()
    unknown = runner.invoke(cli.app, [*args, "--precision", "fp8", "--out", str(tmp_path / "no")])
    assert unknown.exit_code == 1 and "unknown --precision 'fp8'" in unknown.output
    result = runner.invoke(cli.app, [*args, "--precision", "bf16", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"] == "bf16"
