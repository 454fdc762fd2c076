"""One small model of each family a user brings trains with TRD at a full and a reduced size (issue 40).

Each: ``trd train`` on generated JPEGs at 64 px with the first half of its steps at 32 px (the
window reading, so which steps are reduced is known by hand: the first two of four), then
``trd eval``'s test-size sweep on the run. docs/models.md's table is this sweep's output.
"""

from __future__ import annotations

import json

import pytest
from helpers import make_jpeg_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.cost import count_image_flops
from trdcli.run.models import build_model

runner = CliRunner()

FULL_PX, LOW_PX, BATCH, CLASSES = 64, 32, 8, ("a", "b")
TRAIN_IMAGES = 8 * len(CLASSES)  # two steps an epoch
# (family, arch, whether it has BatchNorm). timm's are skipped where timm is not installed.
FAMILIES = [
    ("ResNet", "resnet18", True),
    ("fastai xresnet", "xresnet18", True),
    ("EfficientNet", "efficientnet_b0", True),
    ("MobileNetV3", "mobilenet_v3_small", True),
    ("RegNet", "regnet_x_400mf", True),
    ("ConvNeXt", "timm/convnext_atto", False),
    ("ViT", "timm/vit_tiny_patch16_224", False),
    ("DeiT", "timm/deit_tiny_patch16_224", False),
    ("Swin", "timm/swin_tiny_patch4_window7_224", False),
    ("EfficientViT", "timm/efficientvit_b0", True),
    ("MobileViT", "timm/mobilevit_xxs", True),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_jpeg_folder(tmp_path_factory.mktemp("families"), classes=CLASSES, n_train=8, n_valid=4)


@pytest.mark.slow
@pytest.mark.parametrize(("family", "arch", "has_batchnorm"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_family_trains_reduced_steps_as_planned_and_evaluates_across_sizes(
    tmp_path, data, family, arch, has_batchnorm
):
    if arch.startswith("timm/"):
        pytest.importorskip("timm", reason="timm is in the test extra: pip install -e '.[test]'")
    out = tmp_path / "run"
    args = ["train", str(data), "--arch", arch, "--size", str(FULL_PX), "--low-res", str(LOW_PX), "--until", "0.5",
            "--epochs", "2", "--batch-size", str(BATCH), "--lr", "1e-3", "--workers", "0"]  # fmt: skip
    trained = runner.invoke(cli.app, [*args, "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    run = json.loads((out / "run.json").read_text())
    # Four steps, the first half of the run reduced: two at each size, a batch each.
    assert run["steps_by_px"] == {str(FULL_PX): 2, str(LOW_PX): 2}
    model = build_model(arch, len(CLASSES), device="meta", full_px=FULL_PX)
    per_image = {px: count_image_flops(model, px).train_flops for px in (FULL_PX, LOW_PX)}
    assert run["train_flops"] == 2 * BATCH * (per_image[FULL_PX] + per_image[LOW_PX])
    assert run["has_batchnorm"] is has_batchnorm and (run["bn_recalibration_flops"] > 0) is has_batchnorm
    evaluated = runner.invoke(cli.app, ["eval", str(out), "--sizes", f"{LOW_PX},48,{FULL_PX}", "--no-probes", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    sweep = json.loads(evaluated.stdout)["sweep"]
    assert [row["px"] for row in sweep] == [LOW_PX, 48, FULL_PX]
    assert all(0 <= row["top1"] <= 1 for row in sweep)
