"""``trd presets`` and ``trd recipes``: the named schedules and recipes."""

from __future__ import annotations

from typing import Annotated

import typer

from trdcli.cli.options import ArchOpt, BatchOpt, EpochsOpt, JsonOpt, SizeOpt
from trdcli.cli.shell import FLAGS, app, print_json, stderr, stdout, user_errors


@app.command()
def presets(
    arch: ArchOpt = "resnet50",
    size: SizeOpt = 224,
    epochs: EpochsOpt = 90,
    batch_size: BatchOpt = 256,
    images: Annotated[
        int, typer.Option(help="Training images of the reference run (default: ImageNet-1k).")
    ] = 1_281_167,
    json_out: JsonOpt = False,
):
    """List the named schedules with their source and compute (ResNet-50, ImageNet, 90 epochs unless told)."""
    from trdcli.cli import report
    from trdcli.plan.estimate import preset_table

    with user_errors():
        if not json_out:
            stderr.print("[dim]measuring FLOPs at each resolution the presets use (cached after the first run)...[/]")
        rows = preset_table(arch, size, epochs, batch_size, images)
    for row in rows:
        row["overridable"] = [FLAGS[name] for name in row["overridable"]]
    if json_out:
        print_json(rows)
        return
    stdout.print(report.presets_table(rows, arch, size, epochs))


@app.command()
def recipes(json_out: JsonOpt = False):
    """List the named recipes (--recipe NAME) with their values, their sources and what trd leaves out of them."""
    from trdcli.cli import report
    from trdcli.core.recipes import RECIPES

    rows = [named.describe() for named in RECIPES.values()]
    if json_out:
        print_json(rows)
        return
    stdout.print(report.recipes_table(rows))
