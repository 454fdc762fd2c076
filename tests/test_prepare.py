"""trd prepare: the copy at the size reduced steps need, its manifest, resuming, and staleness."""

from __future__ import annotations

import os
import sqlite3

import pytest
from helpers import make_jpeg_folder
from PIL import Image

from trdcli.core.errors import DataError
from trdcli.data.folders import scan_image_folder
from trdcli.data.prepare import MANIFEST_FILE, PrepareSettings, default_out_dir, prepare_copy, stale_reason

SETTINGS = PrepareSettings(reduced_px=56, min_scale=0.35, trd_version="test")


@pytest.fixture
def data(tmp_path):
    # 500 x 375 and 375 x 500 photo-like JPEGs, and one already small (kept as it is).
    root = make_jpeg_folder(tmp_path / "data", n_train=4, n_valid=1, sizes=((500, 375), (375, 500), (96, 96)))
    return root


def _sources(root):
    return [path for path, _ in scan_image_folder(root).train]


def test_each_image_is_written_at_the_size_the_rule_gives_and_small_ones_are_kept(data, tmp_path):
    out = tmp_path / "copy"
    result = prepare_copy(data, _sources(data), out, SETTINGS)
    assert result.written == 12 and result.already == 0
    for source in _sources(data):
        copy = out / source.relative_to(data)
        with Image.open(source) as original, Image.open(copy) as made:
            # By hand: sqrt(0.35 * W * H * 3/4) is the smallest crop's side; 56 px of it. 500 x 375:
            # sqrt(0.2625 * 187500) = 221.9 -> k = 0.2524 -> 127 x 95 (each side rounded up).
            expected = {(500, 375): (127, 95), (375, 500): (95, 127), (96, 96): (96, 96)}[original.size]
            assert made.size == expected
    small = next(s for s in _sources(data) if Image.open(s).size == (96, 96))
    assert os.path.samefile(small, out / small.relative_to(data))  # linked, not enlarged or re-encoded
    assert result.kept == 4 and result.copy_bytes < result.source_bytes / 2


def test_the_manifest_records_every_file_and_the_settings(data, tmp_path):
    out = tmp_path / "copy"
    prepare_copy(data, _sources(data), out, SETTINGS)
    db = sqlite3.connect(out / MANIFEST_FILE)
    settings = dict(db.execute("SELECT key, value FROM settings"))
    assert settings["reduced_px"] == "56" and settings["min_scale"] == "0.35" and settings["quality"] == "90"
    assert settings["source"] == str(data.resolve()) and settings["trd_version"] == "test"
    rows = {r[0]: r for r in db.execute("SELECT * FROM files")}
    assert sorted(rows) == sorted(s.relative_to(data).as_posix() for s in _sources(data))
    for source in _sources(data):
        row = rows[source.relative_to(data).as_posix()]
        assert row[1:3] == (source.stat().st_size, source.stat().st_mtime_ns)
        with Image.open(source) as original, Image.open(out / source.relative_to(data)) as made:
            assert row[3:7] == (*original.size, *made.size)
    assert stale_reason(data, _sources(data), out, SETTINGS) is None


def test_a_rerun_continues_and_a_changed_file_is_made_again(data, tmp_path):
    out = tmp_path / "copy"
    sources = _sources(data)
    prepare_copy(data, sources[:5], out, SETTINGS)  # as if stopped after 5 files
    result = prepare_copy(data, sources, out, SETTINGS)
    assert (result.already, result.written) == (5, 7)
    # A source rewritten since: stale until made again, then fresh.
    Image.open(sources[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(sources[0], quality=80)
    assert "changed since" in stale_reason(data, sources, out, SETTINGS)
    again = prepare_copy(data, sources, out, SETTINGS)
    assert (again.already, again.written) == (11, 1) and stale_reason(data, sources, out, SETTINGS) is None


def test_a_copy_for_other_settings_or_another_folder_is_stale(data, tmp_path):
    out = tmp_path / "copy"
    prepare_copy(data, _sources(data), out, SETTINGS)
    other = PrepareSettings(reduced_px=112, min_scale=0.35)
    assert stale_reason(data, _sources(data), out, other) == (
        "it was made for reduced steps up to 56 px and crops down to 0.35 of the image (aspect 0.75-1.33); "
        "this run needs 112 px and 0.35 (aspect 0.75-1.33)"
    )
    elsewhere = make_jpeg_folder(tmp_path / "other", n_train=1, n_valid=1)
    assert "it was made from" in stale_reason(elsewhere, _sources(elsewhere), out, SETTINGS)
    assert stale_reason(data, _sources(data), tmp_path / "nothing", SETTINGS).startswith("no manifest")
    (out / MANIFEST_FILE).write_bytes(b"not a database" * 100)
    assert "unreadable" in stale_reason(data, _sources(data), out, SETTINGS)
    # Made again for the new settings: every file is rewritten, none kept from the old copy.
    (out / MANIFEST_FILE).unlink()
    prepare_copy(data, _sources(data), out, SETTINGS)
    redone = prepare_copy(data, _sources(data), out, other)
    assert (redone.already, redone.written) == (0, 12)


def test_worker_processes_make_the_same_copy(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    prepare_copy(data, _sources(data), one, SETTINGS)
    prepare_copy(data, _sources(data), two, SETTINGS, workers=2)
    for source in _sources(data):
        rel = source.relative_to(data)
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


def test_bad_input_is_one_error_and_what_was_written_stays(data, tmp_path):
    with pytest.raises(DataError, match="no training images"):
        prepare_copy(data, [], tmp_path / "copy", SETTINGS)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the copy"):
        prepare_copy(data, _sources(data), blocked / "copy", SETTINGS)
    broken = _sources(data)[3]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=r"1 training image\(s\) could not be read"):
        prepare_copy(data, _sources(data), tmp_path / "copy", SETTINGS)
    # The others were written and recorded: the next run (with the image fixed) continues.
    db = sqlite3.connect(tmp_path / "copy" / MANIFEST_FILE)
    assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 11


def test_the_default_folder_is_beside_the_data(data):
    assert default_out_dir(data, 112) == data.resolve().parent / "data-trd-112px"


# --- the training path: reduced steps read the copy ---


def _psnr(a, b) -> float:
    import numpy as np

    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


def test_a_reduced_crop_from_the_copy_is_the_same_crop_as_from_the_original(data, tmp_path):
    import torch

    from trdcli.data.decode import load_random_crop
    from trdcli.data.prepare import copies_for

    out = tmp_path / "copy"
    sources = _sources(data)
    settings = PrepareSettings(reduced_px=56, min_scale=0.35)
    prepare_copy(data, sources, out, settings)
    copies = copies_for(data, sources, out)
    psnrs = []
    for source, copy in zip(sources, copies, strict=True):
        if copy is None:  # kept as it is: the original is the copy
            continue
        for seed in range(5):
            torch.manual_seed(seed)
            original = load_random_crop(source, 56, (0.35, 1.0), full_px=112, flip=seed % 2 == 1)
            torch.manual_seed(seed)
            made = load_random_crop(source, 56, (0.35, 1.0), full_px=112, flip=seed % 2 == 1, copy=copy)
            assert made.size == original.size == (56, 56)
            psnrs.append(_psnr(original, made))
    # The same box (the same draws, scaled into the copy), from a copy with enough pixels across it:
    # what remains is the copy's own resampling and JPEG re-encoding (measured here: above 30 dB).
    assert len(psnrs) == 40 and min(psnrs) > 30, sorted(psnrs)[:3]
    print(f"PSNR copy vs original, 40 crops: median {sorted(psnrs)[20]:.1f} dB, worst {min(psnrs):.1f} dB")
    # Another crop of the same image differs far more: the boxes really are the same ones.
    torch.manual_seed(0)
    one = load_random_crop(sources[0], 56, (0.35, 1.0), full_px=112)
    torch.manual_seed(1)
    other = load_random_crop(sources[0], 56, (0.35, 1.0), full_px=112)
    assert _psnr(one, other) < min(psnrs) - 10


def _train_config(data, out, **kwargs):
    from trdcli.core.schedules import TRDSchedule
    from trdcli.run.config import TrainConfig

    return TrainConfig(
        data=data, epochs=1, size_px=112, batch_size=4, lr=1e-3, schedule=TRDSchedule(56, until=1.0, prob=0.5),
        out_dir=out, min_scale=0.35, **{"workers": 0, **kwargs},
    )  # fmt: skip


@pytest.mark.slow
def test_trd_train_reads_a_fresh_copy_beside_the_data_for_reduced_steps_only(data, tmp_path):
    import json

    from trdcli.run.train import train

    prepare_copy(data, _sources(data), default_out_dir(data, 56), PrepareSettings(56, 0.35))
    result = train(_train_config(data, tmp_path / "run", workers=2))  # read in worker processes
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["prepared_dir"] == str(default_out_dir(data, 56))
    assert run["images_read_by_px"] == {"112": "originals", "56": "prepared"}
    assert not [w for w in result.warnings if "prepared" in w]
    off = train(_train_config(data, tmp_path / "off", use_prepared=False))
    assert off.prepared_dir is None


@pytest.mark.slow
def test_a_stale_copy_is_never_mixed_in(data, tmp_path):
    import pytest as _pytest

    from trdcli.core.errors import ConfigError
    from trdcli.run.train import train

    # Made for 48 px steps: not for this run's 56. Found beside the data: a warning, the originals.
    prepare_copy(data, _sources(data), default_out_dir(data, 56), PrepareSettings(48, 0.35))
    result = train(_train_config(data, tmp_path / "run"))
    assert result.prepared_dir is None
    (warning,) = [w for w in result.warnings if "prepared copy" in w]
    assert "made for reduced steps up to 48 px" in warning and "this run needs 56 px" in warning
    assert "reduced steps read the originals" in warning
    # Named with `prepared`: one error before anything trains, and before a run directory is made.
    with _pytest.raises(ConfigError, match="`prepared` .* cannot be used: it was made for reduced steps up to 48 px"):
        train(_train_config(data, tmp_path / "named", prepared=default_out_dir(data, 56)))
    assert not (tmp_path / "named").exists()


def test_a_copy_that_would_keep_most_of_the_pixels_is_not_made(tmp_path):
    from trdcli.data.photos import photo_like
    from trdcli.data.prepare import prepare_one

    # 160 x 120 at 56 px: the smallest crop's side is sqrt(0.35 * 19200 * 3/4) = 71.0, so a copy would be
    # 127 x 95, 63% of the pixels: above half, kept. 200 x 150: 127 x 95 is 40%, made.
    for size, kept in (((160, 120), True), ((200, 150), False)):
        source = tmp_path / f"{size[0]}.jpg"
        photo_like(*size).save(source, quality=90)
        row = prepare_one(source, tmp_path / "copy" / source.name, source.name, SETTINGS)
        assert row.kept is kept and (row.width, row.height) == (size if kept else (127, 95))


def test_trd_prepare_writes_the_copy_trd_train_then_reads(data, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from trdcli.cli import app as cli

    runner = CliRunner()
    args = ["prepare", str(data), "--size", "112", "--low-res", "56", "--batch-size", "4", "--workers", "0", "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["out_dir"] == str(default_out_dir(data, 56)) and made["reduced_px"] == 56
    assert (made["written"], made["kept"]) == (12, 4)
    assert stale_reason(data, _sources(data), default_out_dir(data, 56), PrepareSettings(56, 0.35)) is None
    again = json.loads(runner.invoke(cli.app, args).stdout)
    assert (again["written"], again["already"]) == (0, 12)
    # A schedule that reduces nothing has nothing to prepare: one line, exit 1.
    none = runner.invoke(cli.app, ["prepare", str(data), "--size", "112", "--batch-size", "4"])
    assert none.exit_code == 1 and "reduces no step" in none.stderr and "Traceback" not in none.output


def test_a_full_disk_stops_with_one_line_and_what_was_written_stays_valid(data, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    real_save, saved = PILImage.Image.save, []

    def full_after_five(self, fp, *args, **kwargs):
        if len(saved) == 5:
            raise OSError(28, "No space left on device")
        saved.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PILImage.Image, "save", full_after_five)
    out = tmp_path / "copy"
    with pytest.raises(DataError, match=r"the copy in .* stopped: \[Errno 28\] No space left on device; what was"):
        prepare_copy(data, _sources(data), out, SETTINGS)
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind
    # Rows are recorded a block of 64 files at a time: the 5 files of the unfinished block are not in
    # the manifest (so they count as not made, and are made again), never recorded half-written.
    done = sqlite3.connect(out / MANIFEST_FILE).execute("SELECT COUNT(*) FROM files").fetchone()[0]
    result = prepare_copy(data, _sources(data), out, SETTINGS)  # space again: it continues
    assert done == 0 and result.already == done and result.written == 12
    assert stale_reason(data, _sources(data), out, SETTINGS) is None


def _prepare_cli(data, *extra):
    import json

    from typer.testing import CliRunner

    from trdcli.cli import app as cli

    args = ["prepare", str(data), "--size", "112", "--batch-size", "4", "--workers", "0", "--json", *extra]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_copy_made_at_another_quality_serves_the_run(data, tmp_path):
    # trd prepare --quality 85 writes the copy a default trd train then reads: quality is the copy's
    # property, not a reason to refuse it (on main it was "made for quality 85, not 90").
    from trdcli.run.train import train

    made = _prepare_cli(data, "--low-res", "56", "--quality", "85")
    result = train(_train_config(data, tmp_path / "run"))
    assert str(result.prepared_dir) == made["out_dir"] == str(default_out_dir(data, 56))
    assert not [w for w in result.warnings if "prepared" in w]
    named = train(_train_config(data, tmp_path / "named", prepared=default_out_dir(data, 56)))
    assert named.prepared_dir == default_out_dir(data, 56)


@pytest.mark.slow
def test_a_copy_made_for_a_larger_reduced_size_serves_a_smaller_one(data, tmp_path):
    import json

    from trdcli.run.train import train

    # Made for 80 px steps (a run at 160 -> 80): every crop still has 80 >= 56 px across, so a 56 px
    # run reads it, found beside the data under its own name and when named.
    larger = default_out_dir(data, 80)
    prepare_copy(data, _sources(data), larger, PrepareSettings(80, 0.35))
    result = train(_train_config(data, tmp_path / "run"))
    assert result.prepared_dir == larger
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["images_read_by_px"] == {"112": "originals", "56": "prepared"}
    assert train(_train_config(data, tmp_path / "named", prepared=larger)).prepared_dir == larger


def test_a_copy_for_a_narrower_crop_range_is_refused_in_one_line(data, tmp_path):
    from typer.testing import CliRunner

    from trdcli.cli import app as cli

    # Made for crops down to half the image: a 0.35 crop would be read below 56 px. The message
    # names what the copy was made for and what the run needs.
    out = tmp_path / "copy"
    prepare_copy(data, _sources(data), out, PrepareSettings(56, 0.5))
    assert stale_reason(data, _sources(data), out, PrepareSettings(56, 0.6)) is None  # 0.6 is covered
    args = ["train", str(data), "--size", "112", "--low-res", "56", "--until", "1", "--prob", "0.5",
            "--epochs", "1", "--batch-size", "4", "--workers", "0", "--prepared", str(out),
            "--out", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert "crops down to 0.5 of the image" in line and "this run needs 56 px and 0.35" in line
    assert not (tmp_path / "run").exists()


def _random_bytes_folder(root):
    """Class folders of random bytes named .jpg: files, but no images."""
    import random

    rng = random.Random(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(3):
                (root / split / label / f"{i}.jpg").write_bytes(bytes(rng.randrange(256) for _ in range(2000)))
    return root


@pytest.mark.parametrize("command", [["estimate-cost"], ["prepare", "--low-res", "112"]])
def test_a_folder_of_files_that_are_not_images_is_named_as_such(tmp_path, command):
    from typer.testing import CliRunner

    from trdcli.cli import app as cli

    # main said "batch size 64 is larger than the 6 training images", counting files it cannot decode.
    data = _random_bytes_folder(tmp_path / "data")
    result = CliRunner().invoke(cli.app, [command[0], str(data), *command[1:]])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: 6 unreadable image(s): ") and str(data / "train" / "a" / "0.jpg") in line
    assert "batch size" not in line


def test_a_prepare_that_could_read_nothing_leaves_nothing(tmp_path):
    from typer.testing import CliRunner

    from trdcli.cli import app as cli

    # A batch small enough to pass the count: every file fails to decode. main left DATA-trd-32px holding
    # only its manifest.
    data = _random_bytes_folder(tmp_path / "data")
    args = ["prepare", str(data), "--size", "64", "--low-res", "32", "--batch-size", "2", "--workers", "0"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.rstrip().endswith("; nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
