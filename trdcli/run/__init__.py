"""One training run, from a ``TrainConfig`` to a ``RunResult`` and its run directory."""
