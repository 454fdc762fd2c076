"""Docs are examples that run, and the figures they quote are the ones the code computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trdcli.cost import FlopsTable, RunShape, default_cache, plan_compute
from trdcli.schedules import TRDSchedule

ROOT = Path(__file__).resolve().parents[1]
# Blocks that need a user's own data (`dls`) or a finished run are shown, not executed.
NEEDS_CONTEXT = ("dls", "runs/")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


SELF_CONTAINED = [
    (doc.name, i, block)
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    for i, block in enumerate(python_blocks(doc))
    if not any(token in block for token in NEEDS_CONTEXT)
]


def test_there_are_runnable_examples():
    assert len(SELF_CONTAINED) >= 1


@pytest.mark.parametrize(("doc", "index", "block"), SELF_CONTAINED, ids=[f"{d}#{i}" for d, i, _ in SELF_CONTAINED])
def test_doc_example_runs(doc, index, block):
    exec(compile(block, f"{doc} block {index}", "exec"), {})


def test_method_card_example_prints_what_it_says():
    namespace: dict = {}
    block = next(b for b in python_blocks(ROOT / "docs" / "method.md") if "resolution_px" in b)
    exec(block, namespace)
    schedule = namespace["schedule"]
    assert schedule.resolution_px(step=0, total_steps=1000, full_px=224) == 112
    assert schedule.resolution_px(step=900, total_steps=1000, full_px=224) == 224
    assert namespace["small"].shape == (8, 3, 112, 112)


def test_quoted_compute_figures_are_the_computed_ones():
    flops = FlopsTable.for_arch("resnet50", 1000, cache=default_cache())
    shape = RunShape(1_281_167, 256, 90, 224)
    window = plan_compute(TRDSchedule(112, until=0.9), shape, flops.at).compute_fraction
    half = plan_compute(TRDSchedule(112, until=0.5), shape, flops.at).compute_fraction
    step_ratio = flops.at(112).train_flops / flops.at(224).train_flops
    quoted = {f"{100 * window:.1f}%", f"{100 * half:.1f}%", f"{100 * step_ratio:.1f}%"}
    assert quoted == {"33.7%", "63.2%", "26.4%"}
    for doc in ("README.md", "docs/method.md", "docs/estimate-cost.md"):
        text = (ROOT / doc).read_text()
        assert "33.7%" in text, doc
