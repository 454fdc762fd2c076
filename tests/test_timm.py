"""timm's transformers train with TRD at any size they can take, and attention's cost is counted (issue 40)."""

from __future__ import annotations

import json
import re

import pytest
from helpers import make_jpeg_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.cost import SizeNotTakenError, count_image_flops
from trdcli.core.errors import UnknownArchError
from trdcli.run import models
from trdcli.run.models import build_model, check_arch

timm = pytest.importorskip("timm", reason="timm is in the test extra: pip install -e '.[test]'")
runner = CliRunner()


def vit_b16_forward_flops_by_hand(px: int) -> int:
    """ViT-B/16 counted by hand: each of 12 blocks does 12*d^2*n multiply-adds in its linear layers
    (qkv 3d^2, projection d^2, MLP 8d^2 per token) and 2*n^2*d in attention (q @ k and p @ v), with
    n tokens (the patches and the class token) of width d = 768; the patch embedding is a 16x16x3 ->
    768 product per patch, the head 768 -> 1000. Two FLOPs per multiply-add."""
    d, patches = 768, (px // 16) ** 2
    n = patches + 1
    blocks = 12 * (12 * d * d * n + 2 * n * n * d)
    return 2 * (blocks + patches * (16 * 16 * 3) * d + d * 1000)


@pytest.mark.parametrize("px", [224, 112])
def test_vit_b16_flops_include_attention_as_counted_by_hand(px):
    # 224: 35.13 GFLOPs, timm's model card's 17.6 GMACs; the linear layers alone are 33.7.
    model = build_model("timm/vit_base_patch16_224", 1000, device="meta")
    measured = count_image_flops(model, px).forward_flops
    assert measured == pytest.approx(vit_b16_forward_flops_by_hand(px), rel=0.01)


def test_attention_is_counted_on_the_cpus_fused_kernel_too():
    """On real CPU tensors torch runs its flash kernel, which FlopCounterMode alone does not count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trdcli.core.cost import _attention_flops

    model = build_model("timm/vit_tiny_patch16_224", 10).eval()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_attention_flops()) as counter:
        model(torch.randn(1, 3, 64, 64))
    meta = count_image_flops(model, 64).forward_flops
    assert counter.get_total_flops() == meta


def test_a_vits_compute_share_at_half_size_is_below_a_resnets():
    """Attention's n^2 falls 16x at half the side, so a ViT saves more than ResNet-50 (0.337 at 112/224)."""
    result = runner.invoke(
        cli.app,
        ["estimate-cost", "--arch", "timm/vit_base_patch16_224", "--dataset", "imagenet", "--epochs", "90",
         "--low-res", "112", "--until", "0.9", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    share = json.loads(result.stdout)["compute_fraction"]
    assert 0.25 < share < 0.337


@pytest.mark.parametrize(
    "arch", ["timm/vit_tiny_patch16_224", "timm/deit_tiny_patch16_224", "timm/swin_tiny_patch4_window7_224"]
)
def test_transformers_take_the_full_size_they_were_built_for_and_the_reduced_one(arch):
    import torch

    model = build_model(arch, 10, full_px=64)
    for px in (64, 32):
        assert model(torch.randn(2, 3, px, px)).shape == (2, 10)


def test_a_vit_built_for_the_runs_size_holds_one_position_per_patch_of_it():
    model = build_model("timm/vit_tiny_patch16_224", 10, full_px=64)
    assert model.pos_embed.shape[1] == (64 // 16) ** 2 + 1  # and the class token


def test_a_size_a_vit_cannot_take_names_the_nearest_it_can():
    model = build_model("timm/vit_tiny_patch16_224", 10, device="meta")
    with pytest.raises(SizeNotTakenError, match=r"cannot take 40 px.*nearest sizes it takes: 32 px and 48 px"):
        count_image_flops(model, 40)


def test_timm_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(models, "_timm_available", lambda: False)
    with pytest.raises(UnknownArchError, match=r"pip install 'trdcli\[timm\]'"):
        check_arch("timm/vit_tiny_patch16_224")


def train_vit_tiny_at_64(tmp_path, out, *options: str):
    """``trd train`` of ViT-Ti/16 at 64 px, batch 8, on a small folder of JPEGs, into ``out``."""
    data = make_jpeg_folder(tmp_path / "data", n_train=8, n_valid=2)
    args = ["train", str(data), "--arch", "timm/vit_tiny_patch16_224", "--size", "64", "--batch-size", "8"]
    return runner.invoke(cli.app, [*args, *options, "--out", str(out), "--workers", "0"])


@pytest.mark.slow
def test_trd_train_a_vit_at_64_with_reduced_steps_at_32(tmp_path):
    out = tmp_path / "run"
    result = train_vit_tiny_at_64(tmp_path, out, "--low-res", "32", "--epochs", "2", "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert set(run["steps_by_px"]) == {"64", "32"}
    assert run["compute_fraction"] < 1
    # LayerNorm keeps no statistics: nothing recalibrated, nothing counted, and the summary says why.
    assert run["has_batchnorm"] is False and run["bn_recalibration_flops"] == 0
    assert run["compute_fraction"] == run["train_compute_fraction"]
    assert "none: the model has no BatchNorm" in result.output


def test_trd_train_refuses_a_reduced_size_a_vit_cannot_take_before_a_run_directory(tmp_path):
    out = tmp_path / "run"
    result = train_vit_tiny_at_64(tmp_path, out, "--low-res", "40", "--epochs", "1")
    assert result.exit_code == 1
    assert "cannot take 40 px" in result.output and "32 px and 48 px" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("arch", ["timm/mixer_s16_224", "timm/coatnet_nano_rw_224"])
def test_a_model_fixed_to_its_built_size_is_built_for_the_run_and_refuses_the_reduced_one(arch):
    # MLP-Mixer mixes a fixed number of tokens, CoAtNet holds attention biases for one grid: neither resizes.
    import torch

    model = build_model(arch, 10, full_px=64)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)  # built for the run's full size, not 224
    with pytest.raises(SizeNotTakenError) as refused:
        count_image_flops(build_model(arch, 10, device="meta", full_px=64), 32)
    # The sizes that round to its one grid, 64 among them (CoAtNet's strided stages round up).
    said = re.search(r"takes only (\d+)(?: to (\d+))? px images, so it cannot train at 32 px", str(refused.value))
    low, high = said.groups()
    assert int(low) <= 64 <= int(high or low) and "without reduced steps" in str(refused.value)


def test_trd_train_of_a_fixed_size_model_says_so_in_one_line_before_a_run_directory(tmp_path):
    data = make_jpeg_folder(tmp_path / "data", n_train=8, n_valid=2)
    out = tmp_path / "run"
    args = ["train", str(data), "--arch", "timm/mixer_s16_224", "--size", "64", "--low-res", "32", "--epochs", "1"]
    result = runner.invoke(cli.app, [*args, "--batch-size", "8", "--out", str(out), "--workers", "0"])
    assert result.exit_code == 1, result.output
    assert "takes only 64 px images" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_an_unknown_timm_name_names_the_closest_ones():
    with pytest.raises(UnknownArchError, match=r"unknown timm model.*did you mean timm/vit_tiny_patch16_224"):
        check_arch("timm/vit_tiny_patch16_22")


@pytest.mark.parametrize(
    ("arch", "has_batchnorm"),
    [("resnet18", True), ("timm/vit_tiny_patch16_224", False), ("timm/convnext_atto", False),
     ("timm/efficientvit_b0", True)],
)  # fmt: skip
def test_the_count_says_whether_the_model_has_batchnorm_to_recalibrate(arch, has_batchnorm):
    flops = count_image_flops(build_model(arch, 10, device="meta", full_px=64), 64)
    assert flops.has_batchnorm is has_batchnorm
    assert flops.recalibration_flops == (flops.forward_flops if has_batchnorm else 0)


def test_a_plan_for_a_model_without_batchnorm_counts_no_recalibration():
    from trdcli.core.cost import RunShape, plan_compute
    from trdcli.core.schedules import TRDSchedule

    model = build_model("timm/vit_tiny_patch16_224", 10, device="meta", full_px=64)
    shape = RunShape(64, 8, 2, 64)
    flops_at = lambda px: count_image_flops(model, px)  # noqa: E731
    plan = plan_compute(TRDSchedule(low_res=32, prob=0.9), shape, flops_at, valid_images=10)
    assert plan.steps_by_px[32] > 0 and plan.recalibration_flops == 0
    # Two epochs' validation and no third: trd train validates again only after recalibrating.
    assert plan.valid_flops == 2 * 10 * flops_at(64).forward_flops


def test_private_batchnorm_on_a_model_without_batchnorm_is_refused_before_a_run_directory(tmp_path):
    out = tmp_path / "run"
    result = train_vit_tiny_at_64(tmp_path, out, "--low-res", "32", "--bn-mode", "private", "--epochs", "1")
    assert result.exit_code == 1, result.output
    assert "has no BatchNorm" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_the_flops_cache_keeps_whether_the_model_has_batchnorm(tmp_path):
    from trdcli.core.cost import ImageFlops
    from trdcli.run.flops_cache import FlopsCache

    FlopsCache(tmp_path / "flops.json").put("vit|px=64", ImageFlops(64, 10, 30, has_batchnorm=False))
    assert FlopsCache(tmp_path / "flops.json").get("vit|px=64", 64).has_batchnorm is False


def test_weights_of_a_vit_trained_at_another_size_are_refused_in_one_line_before_a_run_directory(tmp_path):
    import torch

    weights = tmp_path / "vit224.pth"
    torch.save(build_model("timm/vit_tiny_patch16_224", 3, full_px=224).state_dict(), weights)
    out = tmp_path / "run"
    result = train_vit_tiny_at_64(tmp_path, out, "--weights", str(weights), "--epochs", "1")
    assert result.exit_code == 1, result.output
    # 224 px holds 14 x 14 patches and a class token; 64 px, 4 x 4 and the token.
    assert "pos_embed has shape (1, 197, 192), the model's (1, 17, 192)" in result.output
    assert "Traceback" not in result.output and not out.exists()
