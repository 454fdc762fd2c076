"""The feed check: the loader's rate at each resolution on the user's images, and the workers a device needs."""

from __future__ import annotations

import json
import math

import pytest
from helpers import make_jpeg_folder
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.data.folders import scan_image_folder
from trdcli.run.feed import LoaderRates, feed_check, measure_loader

runner = CliRunner()


def test_workers_needed_by_hand():
    # NVIDIA's 2,470 img/s at 224 px over a worker's 300: 8.2 -> 9 workers; 9,400 at 112 over 500: 18.8 -> 19.
    check = feed_check(LoaderRates({224: 300.0, 112: 500.0}, 256), {224: 2470.0, 112: 9400.0}, workers_available=8)
    assert [(r.px, r.workers_needed) for r in check.rows] == [(224, 9), (112, 19)]
    assert [r.px for r in check.loader_bound()] == [224, 112]
    assert feed_check(LoaderRates({224: 300.0, 112: 500.0}, 256), {224: 2470.0, 112: 9400.0}, 20).loader_bound() == []
    # Without the model's rate there is nothing to compare: rates only, no verdict.
    alone = feed_check(LoaderRates({224: 300.0}, 256), None, 8)
    assert alone.rows[0].workers_needed is None and alone.loader_bound() == []


def test_the_loader_is_timed_at_each_size_on_a_sample(tmp_path):
    folder = scan_image_folder(make_jpeg_folder(tmp_path / "data", n_train=10, n_valid=1))
    timed = measure_loader(folder.train, 64, [64, 32], 0.35, sample=24, batch=8)
    assert sorted(timed.images_per_s) == [32, 64] and all(rate > 0 for rate in timed.images_per_s.values())
    # 24 of the 30 images in 3 batches of 8; the first opens the pass and is not timed.
    assert timed.images_timed == 16


def test_estimate_cost_with_a_folder_and_a_throughput_says_how_many_workers(tmp_path):
    data = make_jpeg_folder(tmp_path / "data", n_train=10, n_valid=1)
    args = ["estimate-cost", str(data), "--arch", "resnet18", "--size", "64", "--low-res", "32", "--epochs", "2"]
    args += ["--batch-size", "8", "--throughput", "64=1000,32=4000", "--feed-sample", "20", "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    feed = json.loads(result.stdout)["feed"]
    # 20 images asked, 2 whole batches of 8; the first opens the pass: 8 timed (main said 20).
    assert feed["sample_images"] == 8 and [row["px"] for row in feed["by_px"]] == [64, 32]
    for row in feed["by_px"]:
        model = {64: 1000.0, 32: 4000.0}[row["px"]]  # as given
        assert row["model_images_per_s_per_device"] == model
        assert row["workers_needed_per_device"] == math.ceil(model / row["loader_images_per_s_per_worker"])
    bound = [r["px"] for r in feed["by_px"] if r["workers_needed_per_device"] > feed["workers_available"]]
    assert feed["loader_bound_px"] == bound
    # 0 skips it; a folder given only to count images then costs no decoding.
    skipped = runner.invoke(cli.app, [*args[:-3], "--feed-sample", "0", "--json"])
    assert skipped.exit_code == 0 and "feed" not in json.loads(skipped.stdout)
    table = runner.invoke(cli.app, args[:-1])
    assert "the loader, timed on 8 of your images" in table.stdout and "workers to keep it fed" in table.stdout


def test_a_negative_sample_is_one_line(tmp_path):
    data = make_jpeg_folder(tmp_path / "data", n_train=2, n_valid=1)
    result = runner.invoke(
        cli.app, ["estimate-cost", str(data), "--low-res", "32", "--size", "64", "--feed-sample", "-3"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == "error: --feed-sample must be 0 (no feed check) or a number of images, got -3\n"


def test_the_check_times_reduced_sizes_on_a_fresh_prepared_copy_as_trd_train_reads_it(tmp_path, monkeypatch):
    import trdcli.data.loaders as loaders
    from trdcli.core.schedules import TRDSchedule
    from trdcli.data.prepare import default_out_dir, prepare_for_run

    data = make_jpeg_folder(tmp_path / "data", n_train=10, n_valid=1, sizes=((400, 300), (300, 400)))
    options = ["--size", "64", "--low-res", "32", "--epochs", "2", "--batch-size", "8"]
    prepare_for_run(data, 64, TRDSchedule(32), epochs=2, batch_size=8, min_scale=0.35)
    read = []
    real = loaders.load_random_crop
    monkeypatch.setattr(
        loaders, "load_random_crop", lambda path, px, *a, copy=None, **k: read.append((px, copy is not None)) or real(
            path, px, *a, copy=copy, **k
        ),
    )  # fmt: skip
    args = ["estimate-cost", str(data), "--arch", "resnet18", *options, "--feed-sample", "16", "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["feed"]["prepared_dir"] == str(default_out_dir(data, 32))
    # Full size reads the originals, 32 px the copy: every image of each timed pass.
    assert {px: {c for p, c in read if p == px} for px in (64, 32)} == {64: {False}, 32: {True}}


def test_a_shortfall_is_one_line_naming_the_resolution_and_how_short():
    from trdcli.run.feed import shortfall_warnings

    # 8 workers x 300 = 2,400 img/s against 2,470: short by 1 - 2400/2470 = 2.8%; at 112 px 4,000 against 9,400: 57%.
    check = feed_check(LoaderRates({224: 300.0, 112: 500.0}, 256), {224: 2470.0, 112: 9400.0}, workers_available=8)
    assert shortfall_warnings(check) == [
        "the loader may not keep up at 224 px: 8 worker(s) deliver about 2,400 images/s, the model trains 2,470 "
        "(short by 3%); 9 workers would keep it fed (`workers`; `trd prepare` makes reduced steps cheaper to load)",
        "the loader may not keep up at 112 px: 8 worker(s) deliver about 4,000 images/s, the model trains 9,400 "
        "(short by 57%); 19 workers would keep it fed (`workers`; `trd prepare` makes reduced steps cheaper to load)",
    ]
    assert shortfall_warnings(feed_check(LoaderRates({224: 300.0}, 256), {224: 2000.0}, 8)) == []  # 2,400 >= 2,000


def _run_with_the_accelerator_gate_open(tmp_path, monkeypatch, n_train: int, batch: int, schedule):
    """A tiny `trd train` with the feed check's CUDA gate opened: the one thing here that needs a GPU."""
    import trdcli.run.train as train_module
    from trdcli.run.config import TrainConfig

    monkeypatch.setattr(train_module, "_feed_check_applies", lambda device: True)
    data = make_jpeg_folder(tmp_path / "data", n_train=n_train, n_valid=1)
    config = TrainConfig(
        data=data, epochs=1, size_px=64, batch_size=batch, workers=0, lr=1e-3, check_images=False,
        schedule=schedule, out_dir=tmp_path / "run",
    )  # fmt: skip
    return train_module.train(config)


@pytest.mark.slow
def test_trd_train_runs_the_check_in_its_first_seconds_on_an_accelerator(tmp_path, monkeypatch):
    # The gate is the one thing that needs a GPU: opened here, the check runs for real on the CPU.
    from trdcli.core.schedules import TRDSchedule

    result = _run_with_the_accelerator_gate_open(tmp_path, monkeypatch, 8, 8, TRDSchedule(32, until=1.0, prob=0.5))
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["feed_check"]
    assert saved == result.feed_check and saved["workers_available"] == 1 and saved["sample_images"] == 16
    assert [row["px"] for row in saved["by_px"]] == sorted(map(int, result.compute.steps_by_px), reverse=True)
    assert all(row["model_images_per_s_per_device"] > 0 for row in saved["by_px"])
    # The verdict is the machine's; each resolution it calls loader-bound has its one warning line.
    for px in saved["loader_bound_px"]:
        assert sum(w.startswith(f"the loader may not keep up at {px} px") for w in result.warnings) == 1


@pytest.mark.slow
def test_the_runs_check_gives_way_when_the_device_has_no_room_for_a_second_model(tmp_path, monkeypatch):
    # Out of device memory cannot happen on the CPU: the one stand-in here is the error itself.
    import torch

    import trdcli.run.throughput as throughput
    from trdcli.core.schedules import TRDSchedule

    def no_room(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(throughput, "measure_throughput", no_room)
    result = _run_with_the_accelerator_gate_open(tmp_path, monkeypatch, 4, 4, TRDSchedule(32))
    assert result.feed_check is None
    assert "the feed check was skipped: timing the model beside the run's ran out of device memory" in result.warnings


def test_a_feed_check_that_cannot_read_its_sample_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    import trdcli.run.feed as feed
    from trdcli.core.errors import DataError
    from trdcli.core.schedules import TRDSchedule

    def unreadable(*args, **kwargs):
        raise DataError("cannot read image x.jpg: truncated")

    monkeypatch.setattr(feed, "measure_loader", unreadable)
    result = _run_with_the_accelerator_gate_open(tmp_path, monkeypatch, 4, 4, TRDSchedule(32))
    assert result.feed_check is None and result.compute.steps == 3
    assert "the feed check was skipped: cannot read image x.jpg: truncated" in result.warnings


def test_estimate_cost_takes_trd_trains_prepared_options(tmp_path):
    from trdcli.core.schedules import TRDSchedule
    from trdcli.data.prepare import prepare_for_run

    data = make_jpeg_folder(tmp_path / "data", n_train=6, n_valid=1, sizes=((400, 300), (300, 400)))
    elsewhere = tmp_path / "elsewhere"
    prepare_for_run(data, 64, TRDSchedule(32), epochs=2, batch_size=8, min_scale=0.35, out_dir=elsewhere)
    prepare_for_run(data, 64, TRDSchedule(32), epochs=2, batch_size=8, min_scale=0.35)  # and beside the data
    args = ["estimate-cost", str(data), "--arch", "resnet18", "--size", "64", "--low-res", "32", "--epochs", "2"]
    args += ["--batch-size", "8", "--feed-sample", "8", "--json"]

    def feed_dir(*more):
        result = runner.invoke(cli.app, [*args, *more])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["feed"]["prepared_dir"]

    assert feed_dir("--prepared", str(elsewhere)) == str(elsewhere)
    assert feed_dir("--no-prepared") is None
    bad = runner.invoke(cli.app, [*args, "--prepared", str(tmp_path / "nothing")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.stderr.startswith(f"error: --prepared {tmp_path / 'nothing'} cannot be used: ")


def test_the_check_times_what_the_loaders_workers_do_and_nothing_else(tmp_path, monkeypatch):
    # Which of the loader's parts run in its worker processes (a real loader, 1 worker) and which the
    # check times: the same parts. Normalize and the cast to float run in the training process, after
    # the batch has arrived (on the device, on a GPU); main's check timed them too.
    import os

    from fastai.data.transforms import IntToFloatTensor, Normalize

    from trdcli.data.loaders import ImageItems, image_dataloader

    log = tmp_path / "calls.txt"

    def logged(name, real):
        def call(self, *args, **kwargs):
            with open(log, "a") as out:
                out.write(f"{os.getpid()} {name}\n")
            return real(self, *args, **kwargs)

        return call

    for cls, name, method in ((ImageItems, "decode and crop", "__getitem__"), (Normalize, "normalize", "__call__"),
                              (IntToFloatTensor, "to float", "__call__")):  # fmt: skip
        monkeypatch.setattr(cls, method, logged(name, getattr(cls, method)))

    def parts(pids) -> set[str]:
        return {line.split(" ", 1)[1] for line in log.read_text().splitlines() if int(line.split()[0]) in pids}

    folder = scan_image_folder(make_jpeg_folder(tmp_path / "data", n_train=8, n_valid=1))
    loader = image_dataloader(folder.train, 64, 8, True, workers=1, device="cpu")
    list(loader)
    here = {os.getpid()}
    worker_parts = {line.split(" ", 1)[1] for line in log.read_text().splitlines() if int(line.split()[0]) not in here}
    assert worker_parts == {"decode and crop"} and {"normalize", "to float"} <= parts(here)
    log.unlink()
    measure_loader(folder.train, 64, [64, 32], 0.35, sample=24, batch=8)
    assert parts(here) == worker_parts
