"""``trd demo``: TRD against the baseline on generated shapes, in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli.cli.demo import DEMO_FULL_PX, DEMO_LOW_PX
from trdcli.cli.options import JsonOpt, SeedOpt
from trdcli.cli.shell import app, print_json, stderr, stdout, user_errors


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Keep the generated images and both runs here (default: a new temporary folder)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs for each of the two runs.")] = 8,
    low_res: Annotated[
        int, typer.Option("--low-res", help=f"The TRD run's reduced resolution (the full one is {DEMO_FULL_PX} px).")
    ] = DEMO_LOW_PX,
    until: Annotated[
        float | None, typer.Option(help="The TRD run's decrement window, read as trd train reads --until.")
    ] = None,
    prob: Annotated[
        float | None, typer.Option(help="The TRD run's reduction probability, read as trd train reads --prob.")
    ] = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
):
    """Train a baseline and TRD side by side on generated shapes whose texture is a training shortcut (~3 min, CPU)."""
    from trdcli.cli import report
    from trdcli.cli.demo import run_demo
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.run.results import run_json

    with user_errors(), RichTrainObserver(stderr) as observer:
        comparison = run_demo(out, epochs=epochs, seed=seed, observer=observer, low_res=low_res, until=until, prob=prob)
    if json_out:
        biases = {"baseline": comparison.baseline_shape_bias, "trd": comparison.trd_shape_bias}
        runs = {"baseline": comparison.baseline, "trd": comparison.trd}
        print_json({
            label: {**run_json(run), "shape_bias": biases[label].shape_bias,
                    "shape_bias_ci95": list(biases[label].shape_bias_ci95)}
            for label, run in runs.items()
        })  # fmt: skip
        return
    stdout.print(
        f"Generated {comparison.train_images} training and {comparison.valid_images} validation images "
        f"in {comparison.data_dir}: each shape wears its class's fine stripes in 90% of the training images, "
        "random stripes in validation, another class's in the conflict split",
        highlight=False,
    )
    stdout.print(report.train_summary_table(comparison.baseline))
    stdout.print(report.train_summary_table(comparison.trd))
    stdout.print(
        report.comparison_table(
            comparison.baseline,
            comparison.trd,
            shape_biases=(comparison.baseline_shape_bias, comparison.trd_shape_bias),
        )
    )
    stdout.print(
        report.demo_reading(
            comparison.baseline, comparison.trd, (comparison.baseline_shape_bias, comparison.trd_shape_bias)
        ),
        highlight=False,
    )
