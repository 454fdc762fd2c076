"""``trd prepare``: the copy of a training set at the size reduced steps read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli import __version__
from trdcli.cli.options import (
    SCHEDULE_OPTIONS,
    BatchOpt,
    EpochsOpt,
    JsonOpt,
    MinScaleOpt,
    SeedOpt,
    SizeOpt,
    WorkersOpt,
    schedule_of,
    with_option_groups,
)
from trdcli.cli.shell import app, print_json, stderr, stdout, user_errors
from trdcli.data.prepare import DEFAULT_QUALITY
from trdcli.run.config import TrainConfig


@app.command()
@with_option_groups
def prepare(
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="The image folder `trd train` will read, as for trd train.")
    ],
    size: SizeOpt = TrainConfig.size_px,
    schedule_options: dict = SCHEDULE_OPTIONS,
    seed: SeedOpt = 0,
    epochs: EpochsOpt = TrainConfig.epochs,
    batch_size: BatchOpt = TrainConfig.batch_size,
    valid_pct: Annotated[float | None, typer.Option(help="As for `trd train`.")] = None,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the copy (default: beside the data, <data>-trd-<px>px).")
    ] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality of the resized copies.")] = DEFAULT_QUALITY,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
):
    """Copy the training images at the size reduced steps need, so they decode in a fraction of the time.

    Give the schedule options of the trd train run: the copy covers its largest reduced size at full
    detail for every crop it can draw. trd train then reads it for reduced steps by itself. A rerun
    continues where a stopped one ended.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trdcli.data.loaders import default_workers
    from trdcli.data.prepare import prepare_for_run

    with user_errors():
        schedule = schedule_of(seed, **schedule_options)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=stderr, disable=json_out) as bar:
            # Listing and checking the folder comes first; the count of images to prepare follows.
            task = bar.add_task("listing the images", total=None)
            settings, result = prepare_for_run(
                data, size, schedule, epochs, batch_size, min_scale, valid_pct=valid_pct, seed=seed, out_dir=out,
                quality=quality, workers=default_workers() if workers is None else workers,
                trd_version=__version__,
                progress=lambda done, total: bar.update(task, description="preparing", completed=done, total=total),
            )  # fmt: skip
    payload = {
        "out_dir": str(result.out_dir), "reduced_px": settings.reduced_px, "min_scale": settings.min_scale,
        "quality": settings.quality, "written": result.written, "already": result.already, "kept": result.kept,
        "source_bytes": result.source_bytes, "copy_bytes": result.copy_bytes,
    }  # fmt: skip
    if json_out:
        print_json(payload)
        return
    share = result.copy_bytes / result.source_bytes if result.source_bytes else 1.0
    stdout.print(
        f"{result.written + result.already:,} training images in {result.out_dir} ({result.written:,} written now, "
        f"{result.already:,} already there, {result.kept:,} kept at their own size): {share:.0%} of the originals' "
        f"bytes, for reduced steps up to {settings.reduced_px} px with crops from {settings.min_scale:g} of the "
        "image. trd train reads it for its reduced steps.",
        highlight=False,
    )
