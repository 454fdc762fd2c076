"""Docs are examples that run, and the figures they quote are the ones the code computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trdcli.core.cost import RunShape, plan_compute
from trdcli.core.schedules import TRDSchedule
from trdcli.run.flops_cache import arch_flops, default_cache

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def python_blocks(path: Path) -> list[tuple[set[str], str]]:
    """(tags, code) of every ```python block. Tags follow the language: ```python needs-dls."""
    found = re.findall(r"```python([^\n]*)\n(.*?)```", path.read_text(), flags=re.S)
    return [(set(info.split()), code) for info, code in found]


# Every block runs unless it says it cannot (`notest`: it needs a user's finished run).
# `needs-dls` blocks get `dls`: fastai DataLoaders of a small image folder at 128 px, as a notebook has.
BLOCKS = [
    (doc.name, i, tags, code)
    for doc in DOCS
    for i, (tags, code) in enumerate(python_blocks(doc))
    if "notest" not in tags
]
# Blocks that train for real: over 5 s here, so outside `-m "not slow"` (CI runs them all).
SLOW_BLOCKS = {"README.md#0", "method.md#0", "models.md#0"}


def test_blocks_that_do_not_run_say_so_and_are_few():
    skipped = [(doc.name, i) for doc in DOCS for i, (tags, _) in enumerate(python_blocks(doc)) if "notest" in tags]
    assert len(skipped) <= 1, skipped
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize(
    ("doc", "index", "tags", "code"),
    [
        pytest.param(
            *block,
            id=f"{block[0]}#{block[1]}",
            marks=[pytest.mark.slow] if f"{block[0]}#{block[1]}" in SLOW_BLOCKS else [],
        )
        for block in BLOCKS
    ],
)
def test_doc_example_runs(doc, index, tags, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a block writes (runs/...) goes to a temporary folder
    namespace: dict = {}
    if "needs-dls" in tags:
        from fastai.vision.all import ImageDataLoaders, Resize
        from helpers import make_image_folder

        folder = make_image_folder(tmp_path / "data", n_train=8, n_valid=4, px=136)
        namespace["dls"] = ImageDataLoaders.from_folder(
            folder, train="train", valid="val", item_tfms=Resize(128), bs=8, num_workers=0, device="cpu"
        )
    exec(compile(code, f"{doc} block {index}", "exec"), namespace)


def test_method_card_example_prints_what_it_says():
    namespace: dict = {}
    block = next(code for _, code in python_blocks(ROOT / "docs" / "method.md") if "resolution_px" in code)
    exec(block, namespace)
    schedule = namespace["schedule"]
    assert schedule.resolution_px(step=0, total_steps=1000, full_px=224) == 112
    assert schedule.resolution_px(step=900, total_steps=1000, full_px=224) == 224
    assert namespace["small"].shape == (8, 3, 112, 112)


def test_quoted_compute_figures_are_the_computed_ones():
    flops = arch_flops("resnet50", 1000, cache=default_cache())
    shape = RunShape(1_281_167, 256, 90, 224)
    window = plan_compute(TRDSchedule(112, until=0.9), shape, flops.at).compute_fraction
    half = plan_compute(TRDSchedule(112, until=0.5), shape, flops.at).compute_fraction
    step_ratio = flops.at(112).train_flops / flops.at(224).train_flops
    quoted = {f"{100 * window:.1f}%", f"{100 * half:.1f}%", f"{100 * step_ratio:.1f}%"}
    assert quoted == {"33.7%", "63.2%", "26.4%"}
    for doc in ("README.md", "docs/method.md", "docs/estimate-cost.md"):
        text = (ROOT / doc).read_text()
        assert "33.7%" in text, doc
