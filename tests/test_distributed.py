"""One run on two processes: torchrun with 2 gloo ranks on the CPU trains exactly the run one process
would (same steps, resolutions, images and FLOPs), with one run directory, written by rank 0 alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from helpers import make_image_folder

from trdcli.core.errors import ConfigError, TrainingInterrupted
from trdcli.core.schedules import TRDSchedule
from trdcli.run.config import TrainConfig
from trdcli.run.distributed import Ranks, launch_ranks
from trdcli.run.observer import TrainObserver
from trdcli.run.train import train

COMPUTE_KEYS = ("steps", "steps_by_px", "images_by_px", "train_flops", "baseline_train_flops", "compute_fraction")


def test_launch_ranks_reads_the_launchers_environment():
    assert launch_ranks({}) == Ranks(0, 1, 0, 1)
    env = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert launch_ranks(env) == Ranks(5, 8, 1, 4)
    with pytest.raises(ConfigError, match="rank 4 of a world of 2"):
        launch_ranks({"WORLD_SIZE": "2", "RANK": "4"})


def test_ranks_on_one_machine_share_its_cores_for_data_workers(monkeypatch):
    from trdcli.data.loaders import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert default_workers() == 16  # 63, capped
    assert default_workers(8) == 7  # 8 ranks on 64 cores: 8 each, one for the training loop
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers() == 1 and default_workers(2) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*options: str) -> list[str]:
    """torchrun with two processes on a free port, and ``options``, before the module to run."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
            *options]  # fmt: skip


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_ranks_train_the_run_one_process_would(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)  # 24 images: 3 global batches of 8
    args = ["train", str(data), "--size", "64", "--batch-size", "8", "--epochs", "2", "--workers", "0"]
    args += ["--low-res", "32", "--until", "1.0", "--prob", "0.5", "--seed", "3", "--json"]
    single = subprocess.run(
        [sys.executable, "-m", "trdcli", *args, "--out", str(tmp_path / "one")], capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr
    launcher = _torchrun("--redirects", "3", "--log-dir", str(tmp_path / "logs"))
    two = subprocess.run(
        [*launcher, "-m", "trdcli", *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300
    )
    assert two.returncode == 0, two.stderr
    one_run = json.loads((tmp_path / "one" / "run.json").read_text())
    two_runs = json.loads((tmp_path / "two" / "run.json").read_text())
    # The same run: 6 steps of 8 images, each at the resolution the schedule gives its global step.
    planned = TRDSchedule(32, until=1.0, prob=0.5, seed=3).plan_px(6, 64).tolist()
    assert two_runs["steps_by_px"] == {str(px): planned.count(px) for px in (64, 32) if px in planned}
    assert {key: two_runs[key] for key in COMPUTE_KEYS} == {key: one_run[key] for key in COMPUTE_KEYS}
    assert (two_runs["world_size"], one_run["world_size"]) == (2, 1)
    # Every rank validates the whole set: the two ranks spent twice one process's validation.
    assert two_runs["valid_flops"] == 2 * one_run["valid_flops"]
    assert len(two_runs["devices"]) == 2 and all(d.startswith("cpu") for d in two_runs["devices"])
    # One run directory, complete, no temporary files; rank 1 said nothing at all.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "logs", "one", "two"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    rank_logs = {p.parent.name + "/" + p.name: p.read_text() for p in (tmp_path / "logs").rglob("*.log")}
    assert rank_logs, "torchrun wrote no per-rank logs"
    assert all(text == "" for name, text in rank_logs.items() if name.startswith("1/")), rank_logs
    assert json.loads(next(t for n, t in rank_logs.items() if n == "0/stdout.log"))["world_size"] == 2


class InterruptAt(TrainObserver):
    def __init__(self, step: int):
        self.step = step

    def step_done(self, step, epoch, px, loss, images_per_s):
        if step == self.step:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.distributed
def test_a_run_started_on_one_process_resumes_on_two_with_the_same_schedule(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    schedule = TRDSchedule(32, until=1.0, prob=0.5, seed=3)
    config = TrainConfig(
        data=data, epochs=3, size_px=64, batch_size=8, workers=0, seed=3, out_dir=tmp_path / "run", schedule=schedule
    )
    with pytest.raises(TrainingInterrupted):
        train(config, InterruptAt(step=4))  # 3 steps per epoch: epoch 1 is saved
    args = ["train", str(data), "--size", "64", "--batch-size", "8", "--epochs", "3", "--workers", "0"]
    args += ["--low-res", "32", "--until", "1.0", "--prob", "0.5", "--seed", "3", "--resume", str(tmp_path / "run")]
    launcher = _torchrun()
    resumed = subprocess.run([*launcher, "-m", "trdcli", *args], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    planned = schedule.plan_px(9, 64).tolist()
    by_epoch = [planned[3 * e : 3 * e + 3] for e in range(3)]
    expected = [{str(px): epoch.count(px) for px in (64, 32) if px in epoch} for epoch in by_epoch]
    assert [row["steps_by_px"] for row in run["history"]] == expected
    assert run["steps"] == 9 and run["images_by_px"] == {str(px): 8 * planned.count(px) for px in (64, 32)}
    assert run["world_size"] == 2


@pytest.mark.slow
@pytest.mark.distributed
def test_private_batchnorm_trains_under_the_launcher(tmp_path):
    # Each step leaves one BatchNorm copy without gradients; DDP stopped at step 2 on both ranks before.
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    args = ["train", str(data), "--size", "64", "--batch-size", "8", "--epochs", "2", "--workers", "0"]
    args += ["--low-res", "32", "--until", "1.0", "--prob", "0.5", "--seed", "3", "--bn-mode", "private"]
    args += ["--log-to", "tensorboard"]
    launcher = _torchrun()
    two = subprocess.run(
        [*launcher, "-m", "trdcli", *args, "--json", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    planned = TRDSchedule(32, until=1.0, prob=0.5, seed=3).plan_px(6, 64).tolist()
    assert 0 < planned.count(32) < 6  # both copies of BatchNorm trained
    assert run["steps_by_px"] == {str(px): planned.count(px) for px in (64, 32)} and run["world_size"] == 2
    assert run["config"]["bn_mode"] == "private"
    # Rank 0 alone tracks the run: each step once, with the global batch's images (both ranks' 4).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "two" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("trd/px")] == [(i, float(px)) for i, px in enumerate(planned)]
    assert [e.value for e in events.Scalars("trd/images")] == [8.0] * 6


def test_an_explicit_gpu_under_the_launcher_is_refused(monkeypatch):
    from trdcli.run.device import pick_device

    # cuda:1 used to put local ranks 0 and 1 on the same GPU (the remap skipped rank 0).
    with pytest.raises(ConfigError, match="each process uses cuda:<its local rank>"):
        pick_device("cuda:1", local_rank=0, distributed=True)
    with pytest.raises(ConfigError, match="each process uses cuda:<its local rank>"):
        pick_device("cuda:0", local_rank=1, distributed=True)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_split_the_image_check_and_skip_the_same_images(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    broken = sorted((data / "train").rglob("*.png"))[:3]
    for path in broken:
        path.write_bytes(b"not an image")
    args = ["train", str(data), "--size", "64", "--batch-size", "6", "--epochs", "1", "--workers", "0"]
    launcher = _torchrun()
    two = subprocess.run(
        [*launcher, "-m", "trdcli", *args, "--skip-bad-images", "--json", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    # Each rank decoded half the images; both dropped all three broken ones: 21 training images, 3 steps of 6.
    assert run["steps"] == 3 and run["world_size"] == 2
    assert sorted(s["path"] for s in run["skipped_images"]) == sorted(str(p) for p in broken)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_read_a_prepared_copy_for_reduced_steps(tmp_path):
    from helpers import make_jpeg_folder

    from trdcli.data.folders import scan_image_folder
    from trdcli.data.prepare import PrepareSettings, default_out_dir, prepare_copy

    data = make_jpeg_folder(tmp_path / "data", n_train=4, n_valid=1, sizes=((500, 375), (375, 500)))
    sources = [path for path, _ in scan_image_folder(data).train]
    prepare_copy(data, sources, default_out_dir(data, 56), PrepareSettings(56, 0.35))
    args = ["train", str(data), "--size", "112", "--batch-size", "4", "--epochs", "1", "--workers", "0"]
    args += ["--low-res", "56", "--until", "1.0", "--prob", "0.5", "--seed", "3", "--min-scale", "0.35"]
    launcher = _torchrun()
    two = subprocess.run(
        [*launcher, "-m", "trdcli", *args, "--json", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["world_size"] == 2 and run["prepared_dir"] == str(default_out_dir(data, 56))
    assert run["images_read_by_px"] == {"112": "originals", "56": "prepared"}


def _rank_worker(mode: str, out, timeout: int = 300, extra=()) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """tests/rank_worker.py MODE on two gloo ranks; what each rank saw."""
    from pathlib import Path

    worker = Path(__file__).with_name("rank_worker.py")
    out.mkdir(parents=True, exist_ok=True)
    command = [*_torchrun(), str(worker), mode, str(out), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    seen = [out / f"rank{r}.json" for r in (0, 1)]
    rank0, rank1 = (json.loads(path.read_text()) if path.exists() else {} for path in seen)
    return done, rank0, rank1


@pytest.mark.slow
@pytest.mark.distributed
def test_ranks_agree_on_a_sigterm_every_n_steps_not_every_step(tmp_path):
    from rank_worker import SIGNAL_AT_STEP

    from trdcli.run.callbacks import SIGTERM_CHECK_EVERY

    # Rank 1 alone receives SIGTERM after step 20; the ranks agree after steps 15 and 31 (every 16th).
    done, rank0, rank1 = _rank_worker("sigterm", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    n = SIGTERM_CHECK_EVERY
    expected_stop = (SIGNAL_AT_STEP // n + 1) * n - 1
    assert rank0["stopped_at"] == rank1["stopped_at"] == expected_stop == 31
    assert expected_stop - SIGNAL_AT_STEP < n
    # One all-reduce per agreement, not per step (main: one per step, 21 by step 20).
    assert rank0["all_reduces"] == rank1["all_reduces"] == (expected_stop + 1) // n == 2


@pytest.mark.slow
@pytest.mark.distributed
def test_an_internal_error_on_rank_0_stops_the_other_ranks_with_one_line(tmp_path):
    # Rank 0's action raises a RuntimeError, not a TRDError: on main rank 1 waited in the broadcast
    # until the process group timed out (30 minutes; this test gives it 3).
    done, rank0, rank1 = _rank_worker("on_main_raises", tmp_path / "out", timeout=180)
    assert rank0 == {"rank": 0, "raised": "RuntimeError", "message": "an internal bug on rank 0"}
    assert rank1["raised"] == "TRDError"
    assert rank1["message"] == (
        "rank 0 stopped on an internal error (RuntimeError: an internal bug on rank 0); "
        "its traceback is in rank 0's output"
    )
    assert done.returncode == 0, done.stderr[-3000:]  # each rank recorded what it raised, and both returned


@pytest.mark.slow
@pytest.mark.distributed
def test_batchnorm_recalibrated_on_two_ranks_holds_every_images_statistics(tmp_path):
    import numpy as np
    from rank_worker import recalibrated_statistics

    # One fixed network recalibrated on the same 24 images: in one process (3 batches of 8), and on
    # two gloo ranks, each on its 4 of every batch. On main every rank kept rank 0's own statistics,
    # from half the images.
    data = make_image_folder(tmp_path / "data", n_train=8, n_valid=2, px=48)
    _, alone = recalibrated_statistics(data, Ranks())
    done, rank0, rank1 = _rank_worker("recalibrate", tmp_path / "out", extra=[str(data)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert rank0["statistics"] == rank1["statistics"]
    # The first BatchNorm sees the images themselves: the mean of equal shards' means is exactly the
    # global batches' mean, and their variance less the spread between the shards' means.
    np.testing.assert_allclose(rank0["statistics"][0], alone[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rank0["statistics"][1], alone[1], rtol=0.02)
    assert np.abs(np.subtract(rank0["own"][0], alone[0])).max() > 1e-3  # rank 0 alone is not
    # Deeper layers see inputs each rank normalised over its own 4 images (no SyncBatchNorm on gloo):
    # not exact, but nearer one process's than rank 0's own statistics are, for every layer.
    for own, shared, one in zip(rank0["own"], rank0["statistics"], alone, strict=True):
        assert np.abs(np.subtract(shared, one)).mean() < np.abs(np.subtract(own, one)).mean()
