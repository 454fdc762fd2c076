"""`trd eval`: the sweep reproduces the run, cue-conflict scoring against a stub, errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import make_image_folder
from PIL import Image
from typer.testing import CliRunner

from trdcli.cli import app as cli
from trdcli.core.schedules import TRDSchedule
from trdcli.evaluate import cue_conflict
from trdcli.run.config import TrainConfig
from trdcli.run.train import train

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_image_folder(root / "data", classes=("a", "b", "c", "d", "e", "f"), n_train=6, n_valid=4, px=48)
    config = TrainConfig(
        data=data, epochs=1, size_px=64, batch_size=6, workers=0, schedule=TRDSchedule(32), out_dir=root / "run"
    )
    train(config)
    return root / "run", data


@pytest.mark.slow
def test_the_sweep_at_the_training_size_is_the_runs_own_accuracy(run):
    run_dir, _ = run
    before = (run_dir / "run.json").read_bytes()
    result = runner.invoke(cli.app, ["eval", str(run_dir), "--workers", "0", "--sizes", "48,64", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    recorded = json.loads(before)
    at_train = next(row for row in payload["sweep"] if row["px"] == 64)
    assert at_train["top1"] == recorded["metrics"]["top1"]  # exactly: the same images, weights and crops
    assert at_train["top5"] == recorded["metrics"]["top5"]
    assert at_train["forward_flops_per_image"] == recorded["forward_flops_per_image"]["64"]
    assert [row["px"] for row in payload["sweep"]] == [48, 64]
    # 24 validation images: every accuracy is a whole number of them.
    for row in payload["sweep"]:
        assert row["top1"] * 24 == pytest.approx(round(row["top1"] * 24))
    probes = payload["probes"]
    assert probes["clean_top1"] == recorded["metrics"]["top1"]
    # What each probe keeps is checked against a model whose answer is known: below.
    hybrid = probes["hybrid"]
    assert hybrid["pairs"] == 24  # half the set away is always another class here (4 images per class)
    # Evaluation never changes the training results; it writes eval.json beside them.
    assert (run_dir / "run.json").read_bytes() == before
    assert json.loads((run_dir / "eval.json").read_text()) == payload
    assert (run_dir / "eval.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_default_sizes_span_half_to_1_15_of_the_training_size(run):
    run_dir, _ = run
    result = runner.invoke(cli.app, ["eval", str(run_dir), "--workers", "0", "--no-probes", "--json"])
    assert result.exit_code == 0, result.output
    # 64 x (0.5, 0.625, 0.75, 0.875, 1.0, 1.15), rounded.
    assert [row["px"] for row in json.loads(result.stdout)["sweep"]] == [32, 40, 48, 56, 64, 74]


def test_a_model_trained_elsewhere(run, tmp_path):
    run_dir, data = run
    result = runner.invoke(
        cli.app,
        ["eval", str(data), "--arch", "resnet18", "--weights", str(run_dir / "model.pth"), "--size", "64"]
        + ["--sizes", "64", "--no-probes", "--workers", "0", "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["sweep"][0]["top1"] == json.loads((run_dir / "run.json").read_text())["metrics"]["top1"]
    assert (run_dir / "eval.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda tmp, run_dir, data: [str(tmp)], "holds no readable run.json"),
        (lambda tmp, run_dir, data: [str(run_dir), str(tmp / "nope")], "data folder not found"),
        (
            lambda tmp, run_dir, data: [str(run_dir), str(make_image_folder(tmp / "other", n_train=2, n_valid=2))],
            "has 3 classes",
        ),
        (
            lambda tmp, run_dir, data: [str(run_dir), "--cue-conflict", str(tmp)],
            "needs a network trained on the 1,000 ImageNet classes",
        ),
        (lambda tmp, run_dir, data: [str(data), "--weights", str(run_dir / "model.pth")], "give --arch, --weights"),
    ],
)
def test_errors_are_one_line(run, tmp_path, args, message):
    run_dir, data = run
    result = runner.invoke(cli.app, ["eval", *args(tmp_path, run_dir, data), "--workers", "0", "--no-probes"])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr


# -- cue conflict ---------------------------------------------------------------------------

CATEGORIES = cue_conflict.CATEGORIES


def make_stimuli(root, per_pair: int = 1):
    """PNGs named like the stimuli; pixel values encode the shape (red) and texture (green) category."""
    for s, shape in enumerate(CATEGORIES):
        folder = root / shape
        folder.mkdir(parents=True)
        for t, texture in enumerate(CATEGORIES):
            pixels = np.zeros((40, 40, 3), np.uint8)
            pixels[..., 0], pixels[..., 1] = 10 * s + 5, 10 * t + 5
            Image.fromarray(pixels).save(folder / f"{shape}{per_pair}-{texture}{t + 1}.png")
    return root


class StubModel(nn.Module):
    """Answers the category a channel encodes, with all its mass on that category's first ImageNet class."""

    def __init__(self, classes, channel: int):
        super().__init__()
        self.channel = channel
        self.first_class = [classes.index(cue_conflict.CATEGORY_WNIDS[c][0]) for c in CATEGORIES]
        self.n_classes = len(classes)

    def forward(self, images):
        mean, std = (0.485, 0.456, 0.406)[self.channel], (0.229, 0.224, 0.225)[self.channel]
        value = (images[:, self.channel].mean(dim=(1, 2)) * std + mean) * 255
        category = ((value - 5) / 10).round().long()
        logits = torch.full((images.shape[0], self.n_classes), -20.0)
        logits[torch.arange(len(category)), torch.tensor(self.first_class)[category]] = 20.0
        return logits


def imagenet_like_classes():
    wnids = {w for ws in cue_conflict.CATEGORY_WNIDS.values() for w in ws}
    filler = (f"n9{i:07d}" for i in range(1000))
    return sorted(wnids | {next(filler) for _ in range(1000 - len(wnids))})


@pytest.mark.parametrize(("channel", "expected_bias"), [(0, 1.0), (1, 0.0)])
def test_cue_conflict_scoring_with_a_stub(tmp_path, channel, expected_bias):
    from trdcli.evaluate.evaluation import EvalConfig, _cue_conflict, _stimuli, _Subject

    classes = imagenet_like_classes()
    assert len(classes) == 1000
    stimuli_dir = make_stimuli(tmp_path / "stimuli")
    subject = _Subject(StubModel(classes, channel), "stub", classes, 32, tmp_path, None, 0, None, tmp_path)
    config = EvalConfig(cue_conflict=stimuli_dir, workers=0)
    scored = _cue_conflict(subject, _stimuli(subject, stimuli_dir), config, torch.device("cpu"))
    # 16 x 16 files, of which the 16 whose shape and texture agree are left out.
    assert scored["images"] == 240
    assert scored["shape_bias"] == expected_bias
    # Wilson's interval at 0 or 240 of 240: [0, z^2 / (n + z^2)] = [0, 3.8416 / 243.8416] (or its mirror).
    edge = 3.8416 / 243.8416
    assert scored["shape_bias_ci95"] == pytest.approx([1 - edge, 1.0] if expected_bias else [0.0, edge])
    assert scored["cue_accuracy"] == 1.0
    assert all(row["images"] == 15 for row in scored["by_category"].values())


class MeanRedModel(nn.Module):
    """Answers the class a flat image's red level encodes (class k is 40 k + 20): the lowest frequency only."""

    def forward(self, images):
        red = (images[:, 0].mean(dim=(1, 2)) * 0.229 + 0.485) * 255
        classes = ((red - 20) / 40).round().long().clamp(0, 3)
        return nn.functional.one_hot(classes, 4).float()


def test_hybrid_images_keep_the_low_frequencies_of_one_image_and_count_them(tmp_path):
    from trdcli.data.folders import scan_image_folder
    from trdcli.evaluate.evaluation import EvalConfig, _hybrid_row, _Subject

    data = tmp_path / "flat"
    for split, n in (("train", 1), ("val", 3)):
        for k in range(4):
            (data / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 40), (40 * k + 20, 90, 90)).save(data / split / f"c{k}" / f"{i}.png")
    # A flat image is all low frequency: each hybrid is its low-frequency image, which the model names.
    subject = _Subject(MeanRedModel(), "stub", [f"c{k}" for k in range(4)], 32, data, None, 0, None, tmp_path)
    row = _hybrid_row(subject, scan_image_folder(data), EvalConfig(workers=0, batch_size=4), torch.device("cpu"))
    # 12 images paired with the one 6 places on, always of another class (3 per class).
    assert row["pairs"] == 12
    assert (row["low_frequency_decisions"], row["high_frequency_decisions"]) == (12, 0)
    assert row["low_frequency_bias"] == 1.0


def test_shuffled_and_low_passed_images_keep_what_a_mean_reading_model_needs(tmp_path):
    from trdcli.data.folders import scan_image_folder
    from trdcli.evaluate.evaluation import EvalConfig, _probe_rows, _Subject

    # Noisy images whose mean red level names the class: shuffling tiles moves pixels but keeps
    # every value, and a low-pass keeps the mean (the zero frequency), so a model that reads the
    # mean is right on every probed image: retention exactly 1 at every grid and radius.
    rng = np.random.default_rng(0)
    data = tmp_path / "noisy"
    for split, n in (("train", 1), ("val", 3)):
        for k in range(4):
            (data / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                red = np.clip(40 * k + 20 + rng.integers(-15, 16, (40, 40)), 0, 255)
                pixels = np.stack([red, np.full((40, 40), 90), np.full((40, 40), 90)], axis=-1).astype(np.uint8)
                Image.fromarray(pixels).save(data / split / f"c{k}" / f"{i}.png")
    subject = _Subject(MeanRedModel(), "stub", [f"c{k}" for k in range(4)], 32, data, None, 0, None, tmp_path)
    rows = _probe_rows(subject, scan_image_folder(data), EvalConfig(workers=0, batch_size=4), torch.device("cpu"), None)
    assert rows["clean_top1"] == 1.0
    assert [(r["grid"], r["top1"], r["retention"]) for r in rows["patch_shuffle"]] == [(2, 1.0, 1.0), (4, 1.0, 1.0),
                                                                                         (8, 1.0, 1.0)]  # fmt: skip
    assert [(r["top1"], r["retention"]) for r in rows["low_pass"]] == [(1.0, 1.0)] * 3


def test_cue_conflict_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="cue-conflict folder not found"):
        cue_conflict.find_stimuli(tmp_path / "none")
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "cat1-cat2.png")  # shape and texture agree: no conflict
    with pytest.raises(ValueError, match="no cue-conflict images"):
        cue_conflict.find_stimuli(tmp_path)


def test_cue_conflict_needs_imagenet_classes():
    with pytest.raises(ValueError, match="needs a network trained on the 1,000 ImageNet classes.*has 10 classes"):
        cue_conflict.category_indices([f"n{i:08d}" for i in range(10)])


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (the Wilson score interval).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombes_table(successes, trials, low, high):
    assert cue_conflict.wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


def test_every_size_label_of_eval_png_lies_inside_the_plot(tmp_path, monkeypatch):
    # main placed each label right of and below its point, so the largest size's ran over the plot's
    # right edge and the smallest size's over its bottom one.
    from matplotlib.figure import Figure

    from trdcli.run.plots import save_eval_plot

    outside = []
    real = Figure.savefig

    def checked(fig, *args, **kwargs):
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            frame = ax.get_window_extent(renderer)
            for text in ax.texts:
                box = text.get_window_extent(renderer)
                if box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1:
                    outside.append(text.get_text())
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    sweep = [{"px": px, "forward_flops_per_image": 1.8e9 * (px / 224) ** 2, "top1": 0.5 + px / 1000}
             for px in (112, 160, 224, 288, 336)]  # fmt: skip
    save_eval_plot(sweep, 224, "resnet18", tmp_path / "eval.png")
    assert (tmp_path / "eval.png").exists() and outside == []
