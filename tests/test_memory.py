"""The memory a training step needs, estimated before anything is allocated, against hand counts."""

from __future__ import annotations

import torch.nn as nn
from helpers import make_image_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.run.memory import StepMemory, check_step_fits, estimate_step_memory


def test_saved_activations_and_parameters_match_a_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())
    memory = estimate_step_memory(model, px=4, batch_size=10)
    # Autograd keeps the conv's input (3 x 4 x 4) and the ReLU's output (8 x 4 x 4) per image,
    # float32; the weight (8 x 3 x 3 x 3) is kept 4 times: weights, gradients, Adam's two moments.
    assert memory.activation_bytes == 10 * (3 * 16 + 8 * 16) * 4
    assert memory.parameter_bytes == 4 * (8 * 3 * 3 * 3) * 4
    assert memory.total_bytes == memory.activation_bytes + memory.parameter_bytes


def test_activations_grow_with_the_pixels():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())
    small, large = (estimate_step_memory(model, px, batch_size=2) for px in (8, 16))
    assert large.activation_bytes == 4 * small.activation_bytes


def test_a_step_that_cannot_fit_is_refused_with_the_estimate():
    memory = StepMemory(px=10_000, batch_size=64, parameter_bytes=2**30, activation_bytes=200 * 2**30)
    check_step_fits(memory, None, "cpu")  # unknown free memory: no refusal
    check_step_fits(memory, 300 * 2**30, "cpu")
    try:
        check_step_fits(memory, 16 * 2**30, "cpu (2 cores)")
    except ValueError as exc:
        assert str(exc) == (
            "one training step at `size_px`=10000 with `batch_size`=64 needs at least 201.0 GiB (200.0 GiB of "
            "activations), but cpu (2 cores) has 16.0 GiB free; lower `size_px` or `batch_size`"
        )
    else:
        raise AssertionError("a 201 GiB step was not refused on 16 GiB")


def test_an_absurd_size_is_answered_at_once_in_one_line(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=4, n_valid=2, px=64)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["train", str(data), "--size", "10000", "--workers", "0", "--out", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("warning: size 10000 px is 156.2x the images' median shorter side (64 px)")
    assert lines[-1].startswith("error: one training step at --size=10000 with --batch-size=64 needs at least")
    assert lines[-1].endswith("lower --size or --batch-size")
    assert not out.exists()  # refused before anything was created
