"""--compile (issue 42, part 2): at most one graph per size and mode over a TRD run, checkpoints and
model.pth an uncompiled model loads, and one line where torch cannot compile."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_image_folder

from trdcli.core.errors import ConfigError
from trdcli.core.schedules import TRDSchedule
from trdcli.run.compile import check_can_compile, planned_graphs
from trdcli.run.config import TrainConfig


def test_the_plan_names_a_graph_per_size_and_mode():
    assert planned_graphs([64, 32], 64) == ["train 64 px", "train 32 px", "validation 64 px",
                                            "validation 64 px, last batch"]  # fmt: skip
    assert len(planned_graphs([64], 64)) == 3


def test_no_cpp_compiler_is_one_line(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler \\(g\\+\\+ or clang\\+\\+\\): none found"):
        check_can_compile("inductor", "cpu")
    check_can_compile("aot_eager", "cpu")  # a backend that needs no compiler


def _train(tmp_path, backend: str, n_valid: int = 3, **extra):
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=n_valid, px=48)  # 24 train: 3 steps a epoch
    extra = {"schedule": TRDSchedule(32)} | extra
    extra = {"epochs": 2} | extra
    config = TrainConfig(data=data, size_px=64, batch_size=8, workers=0, compile=True,
                         compile_backend=backend, out_dir=tmp_path / "run", **extra)  # fmt: skip
    return train(config), json.loads((tmp_path / "run" / "run.json").read_text())


@pytest.mark.slow
def test_a_compiled_trd_run_compiles_at_most_one_graph_per_size_and_mode(tmp_path):
    from trdcli.run.models import build_model

    torch._dynamo.reset()
    _, run = _train(tmp_path, "aot_eager")
    record = run["compile"]
    # 32 and 64 px training steps, validation's 8 and last 1 images at 64 px (recalibration runs eagerly).
    assert record["planned_graphs"] == planned_graphs([64, 32], 64)
    assert 1 <= record["graphs"] <= len(record["planned_graphs"])
    # Recompiles happen only as each new (size, mode) first arrives, never twice for the same one.
    assert record["recompiles"] == record["graphs"] - 1 <= len(record["planned_graphs"]) - 1
    assert all("size mismatch" in r or "grad_mode" in r for r in record["guard_failures"])
    # model.pth has the module's own names: an uncompiled model loads it strictly.
    weights = torch.load(tmp_path / "run" / "model.pth", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in weights)
    build_model("resnet18", 3, full_px=64).load_state_dict(weights)


@pytest.mark.slow
def test_a_real_inductor_run_on_the_cpu(tmp_path):
    from trdcli.core.schedules import ConstantSchedule

    # Inductor's C++ compile takes a minute a graph here: the fewest graphs, training and validation at
    # 64 px (24 validation images, no partial batch); the aot_eager test above covers the sizes.
    torch._dynamo.reset()
    result, run = _train(tmp_path, "inductor", n_valid=8, schedule=ConstantSchedule(), epochs=1)
    assert run["compile"]["backend"] == "inductor" and run["compile"]["graphs"] >= 1
    assert 0 <= result.metrics["top1"] <= 1


@pytest.mark.slow
def test_a_compiled_run_resumes_from_its_checkpoint_and_trd_eval_reads_it(tmp_path):
    from dataclasses import replace

    from helpers import InterruptAfter
    from typer.testing import CliRunner

    from trdcli.cli import app as cli
    from trdcli.core.errors import TrainingInterrupted
    from trdcli.run.train import train

    torch._dynamo.reset()
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=3, px=48)
    config = TrainConfig(data=data, epochs=2, size_px=64, batch_size=8, workers=0, schedule=TRDSchedule(32),
                         compile=True, compile_backend="aot_eager", out_dir=tmp_path / "run")  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=4))  # epoch 1 saved
    # The checkpoint has the module's own names too, so the resumed (compiled) run loads it.
    assert not any(
        k.startswith("_orig_mod.") for k in torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=False)["model"]
    )
    result = train(replace(config, resume=tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())["compile"]
    # In this process torch reuses the graphs the first call compiled; a new process compiles its own.
    assert result.config.compile and record["graphs"] <= len(record["planned_graphs"])
    evaluated = CliRunner().invoke(cli.app, ["eval", str(tmp_path / "run"), "--sizes", "64", "--no-probes"])
    assert evaluated.exit_code == 0, evaluated.output
