"""``trd eval``: a trained model examined at other sizes, on probes and on cue conflict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trdcli.cli.options import BatchOpt, JsonOpt, SeedOpt, WorkersOpt
from trdcli.cli.shell import app, fail, print_json, stderr, stdout, user_errors


@app.command("eval")
def eval_command(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A `trd train` run directory; or, with --weights, the image folder (DATA)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Argument(metavar="DATA", help="Image folder to evaluate on (default: the folder the run trained on)."),
    ] = None,
    arch: Annotated[str | None, typer.Option(help="With --weights: the model's architecture.")] = None,
    weights: Annotated[Path | None, typer.Option(help="A model trained elsewhere: its local state dict.")] = None,
    size: Annotated[int | None, typer.Option("--size", help="With --weights: the model's training size in px.")] = None,
    sizes: Annotated[
        str | None, typer.Option(help="Test sizes in px, e.g. 112,160,224 (default: 0.5 to 1.15 of the training size).")
    ] = None,
    bn_recalibrate: Annotated[
        int,
        typer.Option(
            "--bn-recalibrate",
            "--recalibrate-bn",  # its name before trd train's --bn-recalibrate named the same thing
            help="Re-estimate BatchNorm on N batches at each test size first (FixRes).",
        ),
    ] = 0,
    probes: Annotated[bool, typer.Option(help="Run the shape and texture probes at the training size.")] = True,
    ema: Annotated[
        bool,
        typer.Option("--ema", help="Examine the run's moving average of the weights (model_ema.pth), into RUN/ema/."),
    ] = False,
    cue_conflict: Annotated[
        Path | None,
        typer.Option(help="Folder of Geirhos et al.'s cue-conflict stimuli, for ImageNet-1k models (docs/eval.md)."),
    ] = None,
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best available).")] = None,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
):
    """Measure a trained network: accuracy across test sizes with inference FLOPs, and reliance on shape vs texture."""
    from trdcli.cli import report
    from trdcli.cli.progress import RichTrainObserver
    from trdcli.cli.values import parse_sizes
    from trdcli.evaluate.evaluation import EvalConfig, eval_json, evaluate

    with user_errors():
        config = EvalConfig(
            run_dir=None if weights else target, data=target if weights else data, arch=arch, weights=weights,
            size_px=size, sizes_px=parse_sizes(sizes) if sizes else None, bn_recalibrate=bn_recalibrate,
            probes=probes, cue_conflict=cue_conflict, batch_size=batch_size, workers=workers, device=device,
            seed=seed, ema=ema,
        )  # fmt: skip
        with RichTrainObserver(stderr) as observer:
            result = evaluate(config, observer)
    if json_out:
        print_json(eval_json(result))
    else:
        for renderable in report.eval_tables(result):
            stdout.print(renderable)
    if result.write_error:
        raise fail(result.write_error)
