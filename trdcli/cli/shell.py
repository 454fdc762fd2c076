"""What every ``trd`` command shares: the Typer app, the consoles, the exit codes, and the one way a
user's error becomes one line and exit 1."""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trdcli import __version__
from trdcli.core.errors import TRDError, one_line

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a job stopped by it

app = typer.Typer(
    name="trd",
    help="Temporally Resolution Decrement: train image classifiers on reduced-resolution steps, "
    "and see exactly what it saved.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _WholeRowsConsole(Console):
    """stdout and stderr. In a terminal, or with COLUMNS set, as wide as that; written to a file or a
    pipe (``trd compare ... > log``, ``nohup ... 2> log``), as wide as what it prints, so a table keeps
    its rows whole and a progress line stays one line where rich would wrap them at 80 columns."""

    def print(self, *objects, **kwargs):
        if not objects or self.is_terminal or "COLUMNS" in os.environ:
            return super().print(*objects, **kwargs)
        from rich.measure import Measurement

        wide = self.options.update(width=10_000)
        before = self._width  # print(width=) is capped at the console's width: widen the console itself
        self.width = max(80, *(Measurement.get(self, wide, o).maximum for o in objects))
        try:
            return super().print(*objects, **kwargs)
        finally:
            self.width = before


stdout = _WholeRowsConsole()
stderr = _WholeRowsConsole(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"trd {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    """Temporally Resolution Decrement: train image classifiers on reduced-resolution steps, and see exactly what
    it saved."""



# The flag a user typed for each setting the core names in its messages.
_FLAG_NAMES = {"size_px": "--size", "max_data_wait_frac": "--max-data-wait", "gamma": "--lr-gamma"}
_SETTINGS_WITH_FLAGS = [
    "recipe",
    "precision",
    "ema",
    "compile",
    "opt",
    "momentum",
    "wd",
    "wd_norm_bias",
    "lr_schedule",
    "warmup_epochs",
    "milestones",
    "gamma",
    "label_smoothing",
    "mixup",
    "cutmix",
    "arch",
    "epochs",
    "size_px",
    "batch_size",
    "lr",
    "low_res",
    "until",
    "prob",
    "prob_end",
    "initial_scale",
    "preset",
    "seed",
    "valid_pct",
    "workers",
    "weights",
    "out",
    "resume",
    "skip_bad_images",
    "device",
    "resize_mode",
    "bn_recalibrate",
    "bn_recal_view",
    "bn_mode",
    "tail_lr",
    "min_scale",
    "scheduled_loading",
    "direct_crops",
    "max_data_wait_frac",
    "seeds",
    "setting",
    "weights",
    "cue_conflict",
    "sizes",
    "dataset",
    "images",
    "valid_images",
    "classes",
    "measure",
    "throughput",
    "gpu_flops",
    "utilisation",
    "price_per_hour",
    "devices",
    "budget",
    "family",
    "log_to",
    "wandb_project",
    "feed_sample",
    "prepared",
    "use_prepared",
    "quality",
]
FLAGS = {name: _FLAG_NAMES.get(name, "--" + name.replace("_", "-")) for name in _SETTINGS_WITH_FLAGS}


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    # escape: a message may name a path or an extra in brackets (pip install 'trdcli[tensorboard]').
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """trd's own errors -> one red line and exit 1 (TRD_DEBUG=1 shows the traceback); anything else is a bug."""
    try:
        yield
    except TRDError as exc:
        if os.environ.get("TRD_DEBUG"):
            raise
        raise fail(exc.rendered(FLAGS)) from None
    except (RuntimeError, MemoryError) as exc:
        if "out of memory" not in str(exc).lower() or os.environ.get("TRD_DEBUG"):
            raise
        raise fail(f"out of memory ({one_line(exc)}); lower --batch-size or --size") from None


def interrupted_message(exc) -> str:
    how = "stopped by SIGTERM (preempted)" if exc.signal_name == "SIGTERM" else "interrupted"
    if not exc.saved:
        return f"{how} before the first epoch finished; nothing to resume"
    hint = f"resume with the same command plus --resume {exc.run_dir}"
    return f"{how}; epochs 1-{exc.epochs_done} are saved in {exc.run_dir}: {hint}"



def print_json(payload) -> None:
    if not stdout.quiet:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def use_wandb_project(project: str | None) -> None:
    """W&B reads its project from the environment, as `wandb.init` documents; the flag sets it."""
    if project is not None:
        os.environ["WANDB_PROJECT"] = project


def quiet_unless_main() -> None:
    """Under torchrun every rank runs this command; rank 0 alone prints (progress, result, errors)."""
    from trdcli.run.distributed import launch_ranks

    if not launch_ranks().is_main:
        stdout.quiet = stderr.quiet = True
        warnings.simplefilter("ignore")



def main() -> None:
    # fastai's import trips torch's deprecation notice for torch.jit.script: noise for a CLI user.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    try:
        app()
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
