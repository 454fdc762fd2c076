"""``trd estimate-cost``: what a run would cost, before spending it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli.cli.options import (
    SCHEDULE_OPTIONS,
    ArchOpt,
    BatchOrRecipeOpt,
    DatasetName,
    EpochsOrRecipeOpt,
    JsonOpt,
    MinScaleOpt,
    PreparedOpt,
    SeedOpt,
    SizeOpt,
    UsePreparedOpt,
    recipe_of,
    schedule_of,
    with_option_groups,
)
from trdcli.cli.shell import app, print_json, stderr, stdout, user_errors
from trdcli.core.defaults import (
    DEFAULT_BN_RECALIBRATE_BATCHES,
)
from trdcli.core.errors import TRDError
from trdcli.run.config import TrainConfig
from trdcli.run.feed import DEFAULT_FEED_SAMPLE


@app.command("estimate-cost")
@with_option_groups
def estimate_cost(
    data: Annotated[
        Path | None,
        typer.Argument(
            metavar="DATA",
            help="An image folder: its images are counted, and a sample times the loader (the feed check).",
        ),
    ] = None,
    dataset: Annotated[
        DatasetName | None,
        typer.Option(help="A known dataset: imagenet = 1,281,167 train / 50,000 val, 1,000 classes."),
    ] = None,
    images: Annotated[int | None, typer.Option(help="Training images (instead of DATA or --dataset).")] = None,
    valid_images: Annotated[int | None, typer.Option(help="Validation images, for validation compute.")] = None,
    classes: Annotated[int | None, typer.Option(help="Number of classes (default: from the data, or 1000).")] = None,
    valid_pct: Annotated[
        float | None, typer.Option(help="As for `trd train`, for a DATA folder of class folders.")
    ] = None,
    arch: ArchOpt = TrainConfig.arch,
    epochs: EpochsOrRecipeOpt = None,
    size: SizeOpt = TrainConfig.size_px,
    batch_size: BatchOrRecipeOpt = None,
    recipe: Annotated[
        str | None, typer.Option(help="Plan a named recipe's epochs and batch (see `trd recipes`); options override.")
    ] = None,
    schedule_options: dict = SCHEDULE_OPTIONS,
    seed: SeedOpt = 0,
    measure: Annotated[
        bool, typer.Option(help="Time real training steps of the model here, at each resolution.")
    ] = False,
    measure_batch: Annotated[
        int | None, typer.Option(help="Batch size for --measure (default: --batch-size, at most 16).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Device for --measure (default: the best available).")] = None,
    throughput: Annotated[str | None, typer.Option(help="Known images/s per device, e.g. 224=2600,112=9800.")] = None,
    gpu_flops: Annotated[
        float | None,
        typer.Option(help="Peak FLOP/s of one device (e.g. 312e12); utilisation from NVIDIA's published figures."),
    ] = None,
    utilisation: Annotated[
        str | None,
        typer.Option(help="Share of --gpu-flops a step sustains: 0.19, or per resolution 224=0.19,112=0.12."),
    ] = None,
    price_per_hour: Annotated[
        float | None, typer.Option(help="Price of one device per hour, for the money column.")
    ] = None,
    devices: Annotated[int, typer.Option(help="Devices training in parallel (ideal data-parallel scaling).")] = 1,
    budget: Annotated[
        str | None, typer.Option(help="0.4 or 40% of the baseline's compute, a time (12h) or a price ($500).")
    ] = None,
    bn_recalibrate: Annotated[
        int | None,
        typer.Option(
            help="BatchNorm recalibration after the run, in batches, as `trd train` takes it; its forward passes "
            f"count (default: {DEFAULT_BN_RECALIBRATE_BATCHES} when any step is reduced; 0 for a model without "
            "BatchNorm)."
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Save the planned resolution per step as a PNG.")] = None,
    feed_sample: Annotated[
        int,
        typer.Option(
            help="With DATA: time trd's training loader on this many of its images at each resolution the "
            "schedule uses, and with a throughput say how many workers keep a device fed (0: skip)."
        ),
    ] = DEFAULT_FEED_SAMPLE,
    min_scale: MinScaleOpt = TrainConfig.min_scale,
    prepared: PreparedOpt = None,
    use_prepared: UsePreparedOpt = TrainConfig.use_prepared,
    json_out: JsonOpt = False,
):
    """Plan a run's compute, time and money before spending it; answer budget questions."""
    from trdcli.cli import report
    from trdcli.cli.values import parse_budget, parse_throughput
    from trdcli.plan.estimate import PlanOptions, plan
    from trdcli.run.results import plan_json
    from trdcli.run.throughput import Throughput

    with user_errors():
        chosen = recipe_of(recipe, epochs, batch_size, None)  # the recipe's epochs and batch, nothing else
        options = PlanOptions(
            arch=arch,
            size_px=size,
            epochs=chosen.epochs,
            batch_size=chosen.batch_size,
            schedule=schedule_of(seed, **schedule_options),
            seed=seed,
            data=data,
            dataset=dataset.value if dataset else None,
            images=images,
            valid_images=valid_images,
            classes=classes,
            valid_pct=valid_pct,
            measure=measure,
            measure_batch=measure_batch,
            device=device,
            throughput=Throughput(parse_throughput(throughput), "given with --throughput") if throughput else None,
            gpu_rate=_gpu_rate(gpu_flops, utilisation, size),
            price_per_hour=price_per_hour,
            devices=devices,
            budget=parse_budget(budget) if budget is not None else None,
            bn_recalibrate=bn_recalibrate,
            feed_sample=feed_sample,
            prepared=prepared,
            use_prepared=use_prepared,
            min_scale=min_scale,
        )
        if data is not None and feed_sample and not json_out:
            stderr.print(f"[dim]timing the loader at each resolution on up to {feed_sample} of the images...[/]")
        if measure and not json_out:
            stderr.print("[dim]timing training steps at each resolution (--measure)...[/]")
        result = plan(options)
        if plot is not None:
            _save_plan_plot(result, plot)
    if json_out:
        print_json(plan_json(result))
        return
    for renderable in report.estimate_tables(result):
        stdout.print(renderable)


def _gpu_rate(gpu_flops: float | None, utilisation: str | None, size_px: int):
    from trdcli.cli.values import parse_utilisation
    from trdcli.core.errors import ConfigError
    from trdcli.plan.estimate import GpuRate

    if gpu_flops is None:
        if utilisation is not None:
            raise ConfigError("`utilisation` is a share of `gpu_flops`: give both")
        return None
    return GpuRate(gpu_flops, parse_utilisation(utilisation, size_px) if utilisation is not None else None)


def _save_plan_plot(result, path: Path) -> None:
    from trdcli.run.plots import save_plan_plot

    estimate = result.estimate
    try:
        save_plan_plot(
            estimate.profile,
            estimate.shape.total_steps,
            estimate.shape.full_px,
            f"{estimate.arch}: {estimate.schedule.name}",
            path,
        )
    except OSError as exc:
        raise TRDError(f"cannot write --plot {path}: {exc.strerror or exc}") from exc
