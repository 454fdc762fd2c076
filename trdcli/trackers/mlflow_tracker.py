"""MLflow: a run's steps, epochs and summary through MLflow's own client, in the store teams use.

The tracking URI is ``MLFLOW_TRACKING_URI``, else a local SQLite store in the run directory
(``RUN/mlflow.db``, artifacts in ``RUN/mlartifacts``; a ``trd compare`` keeps one for all its
runs in the compare folder). SQLite, not the file store: MLflow 3.7 made ``sqlite:///mlflow.db``
its default and put the file store (``./mlruns``) in maintenance mode, and the SQL store is
indexed for searches over many runs. The experiment is ``MLFLOW_EXPERIMENT_NAME``,
else ``trd``. Per step ``log_batch`` of the step's metrics (with ``step``), the configuration as
parameters (flattened), the final figures at the last step, and ``run.json``,
``history.csv`` and ``schedule.png`` as artifacts. A ``trd compare`` run is a child of the
comparison's parent run (the ``mlflow.parentRunId`` tag), so MLflow's run table nests them.
A run is found again by its folder (the ``trd.run_dir_id`` tag, a digest of its path, which a search
filter holds whatever the path's characters; ``trd.run_dir`` keeps the path itself): a resumed run,
or a comparison run again, continues the same MLflow run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trdcli.trackers.interface import RunGroup, RunSummary, StepLog, flat_hparams, run_label

DEFAULT_EXPERIMENT = "trd"
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
RUN_DIR_TAG = "trd.run_dir"
RUN_DIR_ID_TAG = "trd.run_dir_id"
_BATCH = 1000  # MLflow takes at most 1,000 metrics and 100 parameters in one log_batch


def packages() -> tuple[str, ...]:
    """mlflow; and SQLAlchemy with Alembic for the local SQLite store, when no server is named."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return ("mlflow",) + (("sqlalchemy", "alembic") if not uri or uri.startswith("sqlite") else ())


def _client(store_dir: Path):
    import logging

    from mlflow import MlflowClient

    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables...": noise
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(store_dir).resolve() / STORE_FILE}"
    return MlflowClient(tracking_uri=uri), uri


def _experiment_id(client, store_dir: Path) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    local = None if os.environ.get("MLFLOW_TRACKING_URI") else (Path(store_dir).resolve() / ARTIFACTS_DIR).as_uri()
    return client.create_experiment(name, artifact_location=local)


def run_dir_id(run_dir: Path) -> str:
    """The digest a run directory's MLflow run is found by: hex digits, never quoted in a filter."""
    import hashlib

    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:32]


def _find_or_create_run(client, experiment_id: str, run_dir: Path, name: str, parent_id: str | None):
    key = run_dir_id(run_dir)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_ID_TAG}` = '{key}'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id, True
    tags = {RUN_DIR_TAG: str(Path(run_dir).resolve()), RUN_DIR_ID_TAG: key}
    tags |= {"mlflow.parentRunId": parent_id} if parent_id else {}
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id, False


def open_parent_run(group: RunGroup) -> str:
    """The parent run of a comparison (the same one when it is rerun)."""
    client, _ = _client(group.store_dir)
    experiment = _experiment_id(client, group.store_dir)
    return _find_or_create_run(client, experiment, group.store_dir, group.name, None)[0]


# trd's outcome -> MLflow's run status.
STATUS = {"finished": "FINISHED", "killed": "KILLED", "failed": "FAILED"}


def close_parent_run(group: RunGroup, run_id: str, outcome: str = "finished") -> None:
    _client(group.store_dir)[0].set_terminated(run_id, status=STATUS[outcome])


class MlflowTracker:
    name = "mlflow"

    def __init__(self, run_dir: Path, group: RunGroup | None = None, note: Callable[[str], None] = print):
        self.run_dir, self.group, self.note = Path(run_dir), group, note
        self.client = self.run_id = None

    def start(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        store_dir = self.group.store_dir if self.group is not None else self.run_dir
        self.client, uri = _client(store_dir)
        experiment = _experiment_id(self.client, store_dir)
        parent = self.group.parents.get(self.name) if self.group is not None else None
        self.run_id, resumed = _find_or_create_run(
            self.client, experiment, self.run_dir, run_label(self.run_dir, self.group), parent
        )
        if not resumed:  # parameters are written once: MLflow refuses to change a logged one
            params = [Param(k, str(v)[:6000]) for k, v in flat_hparams(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            self.note(f"MLflow: the run is in {uri}; `mlflow ui` on that store shows it")

    def _log(self, points: Sequence[tuple[int, dict[str, float]]]) -> None:
        """(step, {key: value}) points, in batches of the most MLflow takes at once."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for step, values in points for key, value in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + _BATCH])

    def log_steps(self, steps: Sequence[StepLog]) -> None:
        self._log([(log.step, log.scalars()) for log in steps])

    def log_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self._log([(step, {"trd/epoch": epoch, **values})])

    def finish(self, summary: RunSummary) -> None:
        self._log([(summary.step, summary.scalars)])
        if summary.text:
            self.client.log_text(self.run_id, summary.text, "trd_summary.md")
        for path in {*summary.files, *summary.images.values()}:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, outcome: str = "finished") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=STATUS[outcome])
            self.run_id = None


def tracker_for_run(run_dir: Path, group: RunGroup | None = None, note: Callable[[str], None] = print) -> MlflowTracker:
    return MlflowTracker(run_dir, group, note)
