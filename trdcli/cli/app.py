"""The ``trd`` command: the Typer app with every command registered, and ``main``.

Each command is its own module (``train_command``, ``estimate_command``, ...), its options defined
once in :mod:`trdcli.cli.options`; what they share (the consoles, the exit codes, errors as one line)
is :mod:`trdcli.cli.shell`. No training logic lives here. torch and fastai are imported inside the
commands, so ``trd --help`` answers at once.
"""

from __future__ import annotations

from trdcli.cli import (  # noqa: F401  (each registers its commands on the app)
    compare_command,
    demo_command,
    estimate_command,
    eval_command,
    listing_commands,
    prepare_command,
    train_command,
)
from trdcli.cli.shell import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, FLAGS, app, main, stderr, stdout

__all__ = ["app", "main", "stdout", "stderr", "FLAGS", "EXIT_USER_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]
