"""Architectures by name, their FLOPs at reduced resolution, and local weights."""

from __future__ import annotations

import pytest
import torch

from trdcli.core.cost import count_image_flops
from trdcli.core.errors import ConfigError
from trdcli.run.models import UnknownArchError, build_model, check_arch, fastai_archs, load_weights, torchvision_archs


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch",
    ["resnet18", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
     "regnet_y_400mf", "inception_v3", "xresnet18", "xresnext34"],
)  # fmt: skip
def test_families_build_from_scratch_and_take_reduced_steps(arch):
    model = build_model(arch, 7, device="meta")
    out = model(torch.empty(2, 3, 96, 96, device="meta")) if arch != "inception_v3" else None
    if out is not None:
        assert out.shape == (2, 7)
    full, low = count_image_flops(model, 160), count_image_flops(model, 96)
    assert 0 < low.train_flops < full.train_flops
    # Backward is about twice the forward, for every family (the first layer needs no input grad).
    for flops in (full, low):
        assert 2.0 < flops.train_flops / flops.forward_flops <= 3.0


def test_list_and_check():
    names = [*torchvision_archs(), *fastai_archs()]
    assert {"resnet50", "convnext_tiny", "xresnet50"} <= set(names)
    assert not any(n.startswith("vit_") for n in names)
    with pytest.raises(UnknownArchError, match="did you mean resnet50"):
        check_arch("resnet05")
    with pytest.raises(UnknownArchError, match="needs a fixed input size"):
        check_arch("vit_b_16")


def test_timm_names_need_timm():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(UnknownArchError, match="needs timm, which is not installed"):
            check_arch("timm/resnet50")
    else:
        check_arch("timm/resnet18")


def test_local_weights_load_and_a_different_head_is_reported(tmp_path):
    source = build_model("resnet18", 1000)
    path = tmp_path / "weights.pth"
    torch.save({"model": source.state_dict()}, path)
    target = build_model("resnet18", 10)
    skipped = load_weights(target, path)
    assert skipped == ["fc.bias", "fc.weight"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert not torch.equal(target.fc.weight[:10], source.fc.weight[:10])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "`weights` file not found"),
        (b"garbage", "cannot read `weights`"),
        ({"x": torch.zeros(3)}, "no tensor in"),
    ],
)
def test_bad_weights_files(tmp_path, content, message):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=message):
        load_weights(build_model("resnet18", 3), path)


def test_weights_of_another_variant_are_refused_not_half_loaded(tmp_path):
    # wide_resnet50_2 and resnet50: the same names, the middle convolutions twice as wide.
    path = tmp_path / "wide.pth"
    torch.save(build_model("wide_resnet50_2", 10).state_dict(), path)
    target = build_model("resnet50", 10)
    with pytest.raises(ConfigError, match=r"layer1\.0\.bn1\.bias has shape \(128,\), the model's \(64,\)"):
        load_weights(target, path, num_classes=10)
