"""Trackers: a real run's event files read back with TensorBoard's own reader, and the rules
every tracker lives by (blocks of steps, rank 0, a failure is a warning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from helpers import make_image_folder, tensor_dls, tiny_cnn
from typer.testing import CliRunner

from trdcli.callbacks.trd import TRDCallback
from trdcli.core.errors import ConfigError
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.flops_cache import arch_flops
from trdcli.run.observer import TrainObserver
from trdcli.trackers.callback import TRDTracker
from trdcli.trackers.interface import RunSummary, StepLog, flat_hparams

pytest.importorskip("tensorboard", reason="pip install -e '.[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


class Kept:
    """A tracker that keeps what it is sent, in memory: the interface's contract, seen from the inside."""

    name = "kept"

    def __init__(self):
        self.started, self.blocks, self.epochs, self.summaries, self.closed = [], [], [], [], False

    def start(self, config):
        self.started.append(config)

    def log_steps(self, steps):
        self.blocks.append(list(steps))

    def log_epoch(self, step, epoch, values):
        self.epochs.append((step, epoch, values))

    def finish(self, summary):
        self.summaries.append(summary)

    def close(self, outcome="finished"):
        self.closed, self.outcome = True, outcome


class DiskFull(Kept):
    """Fails as a tracker on a full disk does, from the second block on (a full disk cannot be made here)."""

    name = "full"

    def log_steps(self, steps):
        if self.blocks:
            raise OSError(28, "No space left on device")
        super().log_steps(steps)


def _scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    from trdcli.run.train import train

    root = tmp_path_factory.mktemp("tracked")
    data = make_image_folder(root / "data", n_train=16, n_valid=4, px=48)
    config = TrainConfig(
        data=data, epochs=2, size_px=64, batch_size=8, workers=0, lr=1e-3, schedule=TRDSchedule(32),
        log_to=("tensorboard",), out_dir=root / "run",
    )  # fmt: skip
    result = train(config)
    events = EventAccumulator(str(root / "run" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return result, json.loads((root / "run" / "run.json").read_text()), events


def test_each_step_is_logged_at_the_resolution_the_schedule_planned(tracked_run):
    result, run, events = tracked_run
    # 48 images in batches of 8: 6 steps per epoch, 12 in all; the schedule's own plan, step by step.
    planned = TRDSchedule(32).plan_px(12, 64, 6).tolist()
    assert _scalars(events, "trd/px") == [(i, float(px)) for i, px in enumerate(planned)]
    assert [v for _, v in _scalars(events, "trd/images")] == [8.0] * 12
    assert [s for s, _ in _scalars(events, "trd/data_wait_s")] == list(range(12))
    assert all(v >= 0 for _, v in _scalars(events, "trd/data_wait_s"))


def test_the_logged_flops_add_up_to_the_runs_compute(tracked_run):
    _, run, events = tracked_run
    per_image = arch_flops("resnet18", 3)
    planned = TRDSchedule(32).plan_px(12, 64, 6).tolist()
    step_flops = [v for _, v in _scalars(events, "trd/step_train_flops")]
    # TensorBoard keeps float32: 7 significant digits.
    assert step_flops == pytest.approx([8 * per_image.at(px).train_flops for px in planned], rel=1e-6)
    assert sum(step_flops) == pytest.approx(run["train_flops"], rel=1e-6)
    so_far = _scalars(events, "trd/train_flops")
    assert so_far[11][1] == pytest.approx(run["train_flops"], rel=1e-6)
    baseline = [v for _, v in _scalars(events, "trd/baseline_train_flops")][:12]  # then the summary's
    assert baseline == pytest.approx([8 * (i + 1) * per_image.at(64).train_flops for i in range(12)], rel=1e-6)
    # Each step's point is the steps' saving so far; the last point is the run's, recalibration counted.
    saved = _scalars(events, "trd/compute_saved_frac")
    assert saved[10][1] == pytest.approx(1 - so_far[10][1] / baseline[10], rel=1e-6)
    assert saved[-1] == (11, pytest.approx(run["compute_saved_frac"], rel=1e-6))
    assert run["bn_recalibration_flops"] > 0 and run["compute_saved_frac"] < run["train_compute_saved_frac"]


def test_epochs_summary_settings_and_schedule_reach_tensorboard(tracked_run):
    result, run, events = tracked_run
    # Validation after each epoch, at its last step, as run.json's history has it.
    valid = _scalars(events, "trd/valid_loss")
    assert [s for s, _ in valid] == [5, 11]
    assert [v for _, v in valid] == pytest.approx([h["valid_loss"] for h in run["history"]], rel=1e-6)
    assert _scalars(events, "trd/final/top1")[-1][1] == pytest.approx(run["metrics"]["top1"], rel=1e-6)
    assert "trd/schedule" in events.Tags()["images"]
    assert "trd/summary/text_summary" in events.Tags()["tensors"]
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    session = hparams["_hparams_/session_start_info"].decode("latin-1")
    assert "resnet18" in session and "schedule.low_px" in session
    assert not result.warnings


def test_steps_reach_the_tracker_in_blocks_with_the_losses_of_the_steps():
    kept, losses = Kept(), []
    tracker = TRDTracker(kept, flush_every=4)

    class KeepLoss(Callback):  # after the tracker, the loss each step had
        order = 70

        def after_batch(self):
            if self.training:
                losses.append(self.learn.loss.detach().item())

    learn = Learner(
        tensor_dls(n_train=80, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32, until=0.5), tracker, KeepLoss()],
    )  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    # 10 steps in blocks of 4: 4, 4, then the rest when the training pass ends.
    assert [len(b) for b in kept.blocks] == [4, 4, 2]
    steps = [log for block in kept.blocks for log in block]
    assert [log.step for log in steps] == list(range(10))
    assert [log.px for log in steps] == [32] * 5 + [64] * 5  # the window: the first half reduced
    assert [log.loss for log in steps] == pytest.approx(losses)
    assert [log.lr for log in steps] == pytest.approx(learn.recorder.lrs)
    # The fit's summary, with BatchNorm recalibration (the default 8 batches of 8) counted.
    (summary,) = kept.summaries
    assert summary.scalars["trd/compute_saved_frac"] == pytest.approx(learn.trd.summary().compute_saved_frac)
    assert summary.scalars["trd/bn_recalibration_flops"] == 64 * learn.trd.flops.at(64).forward_flops
    assert not kept.closed
    learn.trd_tracker.close()
    assert kept.closed


def test_a_second_fit_continues_the_step_count():
    kept = Kept()
    learn = Learner(
        tensor_dls(n_train=32, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32), TRDTracker(kept)],
    )  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
        learn.fit(1)
    assert [log.step for block in kept.blocks for log in block] == list(range(8))
    assert len(kept.started) == 1 and len(kept.summaries) == 2


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_others_go_on():
    kept, full, warned = Kept(), DiskFull(), []
    learn = Learner(
        tensor_dls(n_train=48, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32), TRDTracker(full, kept, flush_every=2, warn=warned.append)],
    )  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert [len(b) for b in full.blocks] == [2] and full.closed
    assert [len(b) for b in kept.blocks] == [2, 2, 2]
    assert warned == ["full stopped logging (OSError: [Errno 28] No space left on device); the run goes on"]


@pytest.mark.slow
def test_a_real_run_goes_on_when_its_tracker_fails(tmp_path, monkeypatch):
    from trdcli.run.train import train
    from trdcli.trackers.tensorboard_tracker import TensorBoardTracker

    def full_disk(self, steps):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "log_steps", full_disk)  # a full disk cannot be made here
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    config = TrainConfig(
        data=data, epochs=1, size_px=64, batch_size=8, workers=0, lr=1e-3, log_to=("tensorboard",),
        out_dir=tmp_path / "run",
    )  # fmt: skip
    result = train(config)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["metrics"]["top1"] == result.metrics["top1"]
    assert any(w.startswith("tensorboard stopped logging (OSError") for w in run["warnings"])


def test_the_configuration_flattens_to_settings_a_tracker_can_compare():
    config = TrainConfig(data="d", schedule=TRDSchedule(112), log_to=("tensorboard",)).describe()
    flat = flat_hparams(config)
    assert flat["schedule.low_px"] == 112 and flat["schedule.prob"] == 0.9 and flat["epochs"] == 5
    assert flat["log_to"] == "tensorboard" and "lr" not in flat  # None is left out
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())


def test_a_step_logs_run_json_keys_under_trd():
    log = StepLog(step=3, px=112, images=256, step_train_flops=10, run_train_flops=30, run_baseline_train_flops=120,
                  lr=0.1, loss=2.0)  # fmt: skip
    assert (log.train_flops, log.baseline_train_flops) == (30, 120)  # the names trackers read before
    assert log.scalars() == {
        "trd/px": 112.0, "trd/images": 256.0, "trd/step_train_flops": 10.0, "trd/train_flops": 30.0,
        "trd/baseline_train_flops": 120.0, "trd/compute_saved_frac": 0.75, "trd/lr": 0.1, "trd/loss": 2.0,
    }  # fmt: skip
    assert RunSummary(step=0, scalars={}).images == {}


runner = CliRunner()


def test_an_unknown_tracker_or_a_missing_package_is_one_line_before_training(tmp_path, monkeypatch):
    from trdcli.cli import app as cli

    monkeypatch.chdir(tmp_path)  # a run that started would make runs/ here
    data = make_image_folder(tmp_path / "data", n_train=4, n_valid=2, px=48)
    result = runner.invoke(cli.app, ["train", str(data), "--log-to", "nosuch"])
    assert result.exit_code == 1 and not (tmp_path / "runs").exists()
    assert "error: --log-to must be one of tensorboard, wandb, mlflow, got 'nosuch'" in " ".join(result.stderr.split())
    import importlib.util

    real = importlib.util.find_spec
    absent = {"tensorboard", "sqlalchemy"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for tracker, missing in (("tensorboard", "tensorboard"), ("mlflow", "sqlalchemy")):
        result = runner.invoke(cli.app, ["train", str(data), "--log-to", tracker])
        assert result.exit_code == 1 and not (tmp_path / "runs").exists()
        # One wording, right for a wheel and for an editable checkout (main named the wheel's alone).
        said = " ".join(result.stderr.split())
        wheel, checkout = f'pip install "trdcli[{tracker}]"', f'pip install -e ".[{tracker}]"'
        assert f"needs {missing}: {wheel} (in a checkout of trd: {checkout})" in said
        assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.output
    # With a server named, MLflow's client alone is enough: no local store to build.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert TrainConfig(data=data, log_to=("mlflow",)).log_to == ("mlflow",)


# --- Weights & Biases (offline) and MLflow (local SQLite), read back with their own formats ---


def _wandb_records(run_dir):
    """The records of a run's offline ``.wandb`` file, parsed with W&B's own protobuf messages.

    The file is W&B's header (":W&B", magic, version: 7 bytes) and then a LevelDB log: 32 KiB
    blocks of chunks, each with a 7-byte header (CRC, length, type: 1 full, 2 first, 3 middle,
    4 last); a block's tail shorter than a header is padding.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunks, records = 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def _wandb_history(records) -> list[dict[str, float]]:
    rows = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    return [{item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json) for item in row.item}
            for row in rows]  # fmt: skip


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    pytest.importorskip("wandb", reason="pip install -e '.[wandb]'")
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no netrc login: offline, as for a new user
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))


@pytest.fixture
def local_mlflow(monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
    pytest.importorskip("sqlalchemy", reason="pip install -e '.[mlflow]'")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


def _tiny_run(tmp_path, log_to, epochs=2):
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=16, n_valid=4, px=48)
    config = TrainConfig(
        data=data, epochs=epochs, size_px=64, batch_size=8, workers=0, lr=1e-3, schedule=TRDSchedule(32),
        log_to=log_to, out_dir=tmp_path / "run",
    )  # fmt: skip
    notes = []

    class Notes(TrainObserver):
        def note(self, message):
            notes.append(message)

    result = train(config, Notes())
    return result, json.loads((tmp_path / "run" / "run.json").read_text()), notes


def _stopped_run(tmp_path, log_to, run_dir=None) -> TrainConfig:
    """A 2-epoch run with trackers ``log_to``, interrupted after epoch 1 (3 steps an epoch): its config,
    to resume."""
    from helpers import InterruptAfter

    from trdcli.core.errors import TrainingInterrupted
    from trdcli.run.train import train

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)  # 24 images, batch 8: 3 steps/epoch
    config = TrainConfig(
        data=data, epochs=2, size_px=64, batch_size=8, workers=0, lr=1e-3, schedule=TRDSchedule(32),
        log_to=log_to, out_dir=run_dir or tmp_path / "run",
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAfter(step=4))
    return config


@pytest.mark.slow
def test_wandb_offline_keeps_every_step_the_config_and_the_files(tmp_path, offline_wandb):
    result, run, notes = _tiny_run(tmp_path, ("wandb",))
    assert any(n.startswith("W&B: not logged in, so offline") for n in notes)
    records = _wandb_records(tmp_path / "run")
    steps = [row for row in _wandb_history(records) if "trd/px" in row]
    planned = TRDSchedule(32).plan_px(12, 64, 6).tolist()
    assert [(row["_step"], row["trd/step"], row["trd/px"]) for row in steps] == [
        (i, i, px) for i, px in enumerate(planned)
    ]
    # JSON doubles: exact for these integers. The measured FLOPs per image times 8, adding up to run.json's.
    per_image = arch_flops("resnet18", 3)
    assert [row["trd/step_train_flops"] for row in steps] == [8 * per_image.at(px).train_flops for px in planned]
    assert sum(row["trd/step_train_flops"] for row in steps) == run["train_flops"]
    final = [row for row in _wandb_history(records) if "trd/final/top1" in row]
    assert final[-1]["trd/compute_saved_frac"] == pytest.approx(run["compute_saved_frac"], rel=1e-12)
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["schedule.low_px"] == 32 and config["epochs"] == 2
    assert run_record.project == "trd" and run_record.display_name == "run"
    files = {p.name for p in (tmp_path / "run" / "wandb").glob("offline-run-*/files/*")}
    assert {"run.json", "history.csv", "schedule.png"} <= files
    # The offline note is information, kept apart from the warnings (main printed it as a warning).
    assert not result.warnings and run["warnings"] == []
    assert [n for n in run["notes"] if n.startswith("W&B: not logged in, so offline")]


@pytest.mark.slow
def test_a_resumed_run_continues_its_wandb_run(tmp_path, offline_wandb):
    from dataclasses import replace

    from trdcli.run.train import train
    from trdcli.trackers.wandb_tracker import RUN_ID_FILE

    config = _stopped_run(tmp_path, ("wandb",))
    train(replace(config, resume=tmp_path / "run"))
    # W&B writes each process's offline files in a folder named after the run's id: both are one run
    # (on main the resumed process started a second W&B run, with a new id).
    kept = (tmp_path / "run" / "wandb" / RUN_ID_FILE).read_text().strip()
    folders = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and {f.name.rsplit("-", 1)[1] for f in folders} == {kept}
    # A new run in another folder is another W&B run.
    train(replace(config, out_dir=tmp_path / "other", epochs=1))
    assert (tmp_path / "other" / "wandb" / RUN_ID_FILE).read_text().strip() != kept


@pytest.mark.slow
def test_mlflow_finds_the_run_again_whatever_its_folder_is_called(tmp_path, local_mlflow):
    from dataclasses import replace

    from mlflow import MlflowClient

    from trdcli.run.train import train

    # A quote in the path broke the search filter on main: the resumed run lost its tracker.
    run_dir = tmp_path / 'Bob\'s "run"'
    config = _stopped_run(tmp_path, ("mlflow",), run_dir)
    resumed = train(replace(config, resume=run_dir))
    assert not resumed.warnings
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("trd").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["trd.run_dir"] == str(run_dir.resolve())
    assert len(found.data.metrics) > 0


@pytest.mark.slow
def test_mlflow_local_store_keeps_every_step_the_params_and_the_artifacts(tmp_path, local_mlflow):
    from mlflow import MlflowClient

    result, run, notes = _tiny_run(tmp_path, ("mlflow",))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("trd").experiment_id])
    run_id = found.info.run_id
    planned = TRDSchedule(32).plan_px(12, 64, 6).tolist()
    px = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "trd/px"))
    assert px == [(i, float(p)) for i, p in enumerate(planned)]
    flops = client.get_metric_history(run_id, "trd/step_train_flops")
    assert sum(m.value for m in flops) == run["train_flops"]  # float64: exact for these integers
    assert found.data.metrics["trd/compute_saved_frac"] == pytest.approx(run["compute_saved_frac"], rel=1e-12)
    assert found.data.params["schedule.low_px"] == "32" and found.data.params["arch"] == "resnet18"
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert {a.path for a in client.list_artifacts(run_id)} >= {"run.json", "history.csv", "schedule.png"}
    assert any(n.startswith("MLflow: the run is in sqlite:///") for n in notes) and not result.warnings


@pytest.mark.slow
def test_a_comparison_is_one_group_in_each_tracker(tmp_path, offline_wandb, local_mlflow):
    from mlflow import MlflowClient

    from trdcli.plan.compare import CompareConfig, run_compare
    from trdcli.plan.setting import Setting

    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    recipe = TrainConfig(data=data, epochs=1, size_px=64, batch_size=8, workers=0, lr=1e-3, log_to=("wandb", "mlflow"))
    settings = (Setting("baseline"), Setting("trd", low_res=32))
    out = tmp_path / "cmp"
    run_compare(CompareConfig(recipe, settings, (0, 1), out, equal_compute=False))
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("trd").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "cmp" and len(runs) == 5
    assert sorted(r.info.run_name for r in children) == ["baseline/seed0", "baseline/seed1", "trd/seed0", "trd/seed1"]
    groups = []
    for run_dir in sorted(out.glob("*/seed*")):
        (record,) = [r.run for r in _wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
        groups.append((record.run_group, record.display_name))
    assert groups == [("cmp", "baseline/seed0"), ("cmp", "baseline/seed1"), ("cmp", "trd/seed0"), ("cmp", "trd/seed1")]
    # Rerun: nothing trains, and MLflow keeps the one parent.
    run_compare(CompareConfig(recipe, settings, (0, 1), out, equal_compute=False))
    assert len(client.search_runs([client.get_experiment_by_name("trd").experiment_id])) == 5


@pytest.mark.slow
def test_the_notebook_callback_takes_the_trackers_names(tmp_path, local_mlflow):
    from mlflow import MlflowClient

    learn = Learner(
        tensor_dls(n_train=32, bs=8, px=64), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
        cbs=[TRDCallback(low_res=32, until=0.5), TRDTracker("tensorboard", "mlflow", run_dir=tmp_path / "nb")],
    )  # fmt: skip
    with learn.no_bar(), learn.no_logging(), pytest.warns(UserWarning, match="MLflow: the run is in sqlite:///"):
        learn.fit(1)
    learn.trd_tracker.close()
    events = EventAccumulator(str(tmp_path / "nb" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [v for _, v in _scalars(events, "trd/px")] == [32.0, 32.0, 64.0, 64.0]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'nb' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("trd").experiment_id])
    assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "trd/px"), key=lambda m: m.step)] == [
        32.0, 32.0, 64.0, 64.0,
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="must be one of tensorboard, wandb, mlflow"):
        TRDTracker("nosuch")


@pytest.mark.slow
def test_mlflow_marks_an_interrupted_run_killed_and_its_resumption_finished(tmp_path, local_mlflow):
    from dataclasses import replace

    from mlflow import MlflowClient

    from trdcli.run.train import train

    config = _stopped_run(tmp_path, ("mlflow",))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("trd").experiment_id
    (found,) = client.search_runs([experiment])
    assert found.info.status == "KILLED"  # MLflow's name for a run stopped from outside, not "FINISHED"
    train(replace(config, resume=tmp_path / "run"))
    (again,) = client.search_runs([experiment])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("exc", "outcome"), [(None, "finished"), (KeyboardInterrupt(), "killed"), (RuntimeError("bug"), "failed")]
)
def test_how_a_run_ended_is_named_for_the_trackers(exc, outcome):
    from trdcli.core.errors import TrainingDiverged, TrainingInterrupted
    from trdcli.trackers.interface import outcome_of

    assert outcome_of(exc) == outcome
    assert outcome_of(TrainingInterrupted(Path("run"), 1, True, "SIGTERM")) == "killed"
    assert outcome_of(TrainingDiverged("the loss became nan")) == "failed"
