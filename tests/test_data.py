"""Image folders: layouts, odd image formats, unreadable files, and the errors users see."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_image_folder
from PIL import Image

from trdcli.core.errors import DataError
from trdcli.data.folders import drop_bad_images, find_bad_images, load_rgb, scan_image_folder


def write_odd_images(folder, px=40):
    """One file of each awkward kind; returns {kind: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8))
    paths = {}
    paths["grey"] = folder / "grey.jpg"
    rgb.convert("L").save(paths["grey"])
    paths["rgba"] = folder / "rgba.png"
    rgba = np.zeros((px, px, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[: px // 2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(paths["rgba"])
    paths["cmyk"] = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(paths["cmyk"])
    paths["gif"] = folder / "anim.gif"
    frames = [rgb.convert("P"), Image.new("P", (px, px), 3)]
    frames[0].save(paths["gif"], save_all=True, append_images=frames[1:])
    paths["png16"] = folder / "deep.png"
    Image.fromarray(np.full((px, px), 32768, dtype=np.uint16)).save(paths["png16"])
    paths["bmp"] = folder / "plain.bmp"
    rgb.save(paths["bmp"])
    paths["webp"] = folder / "photo.webp"
    rgb.save(paths["webp"])
    paths["palette_alpha"] = folder / "palette.png"
    pal = rgb.convert("P")
    pal.info["transparency"] = 0
    pal.save(paths["palette_alpha"], transparency=0)
    return paths


def write_bad_images(folder, px=40):
    folder.mkdir(parents=True, exist_ok=True)
    good = Image.fromarray(np.random.default_rng(1).integers(0, 255, (px, px, 3), dtype=np.uint8))
    good.save(folder / "whole.jpg", quality=95)
    data = (folder / "whole.jpg").read_bytes()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    garbage = folder / "not_really.png"
    garbage.write_bytes(b"this is not an image")
    return [truncated, garbage]


def test_every_odd_format_becomes_8bit_rgb(tmp_path):
    paths = write_odd_images(tmp_path)
    for kind, path in paths.items():
        image = load_rgb(path)
        assert image.mode == "RGB", kind
        assert image.size == (40, 40), kind


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = write_odd_images(tmp_path)["png16"]
    values = np.asarray(load_rgb(path))
    # 32768 of 65535 is mid grey: 128, not the 255 that clipping would give.
    assert np.all(np.abs(values.astype(int) - 128) <= 1)


def test_transparent_pixels_become_white(tmp_path):
    values = np.asarray(load_rgb(write_odd_images(tmp_path)["rgba"]))
    assert (values[:20] == [255, 0, 0]).all()  # opaque red stays red
    assert (values[20:] == 255).all()  # transparent becomes white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 30), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_rgb(path).size == (30, 60)


def test_unreadable_images_are_found(tmp_path, monkeypatch):
    bad = write_bad_images(tmp_path / "x")
    write_odd_images(tmp_path / "y")
    all_paths = sorted((tmp_path / "x").iterdir()) + sorted((tmp_path / "y").iterdir())
    found = find_bad_images(all_paths)
    assert sorted(b.path for b in found) == sorted(bad)
    reasons = {b.path.name: b.reason for b in found}
    assert "truncated" in reasons["truncated.jpg"]
    # The same answer from worker processes, started by a forkserver (never forked from a process
    # that may hold a CUDA context): the pool's own record of how it started them.
    import concurrent.futures

    contexts = []
    real_pool = concurrent.futures.ProcessPoolExecutor

    class Recording(real_pool):
        def __init__(self, *args, mp_context=None, **kwargs):
            contexts.append(mp_context.get_start_method())
            super().__init__(*args, mp_context=mp_context, **kwargs)

    monkeypatch.setattr("trdcli.data.pool.ProcessPoolExecutor", Recording)
    found_by_workers = find_bad_images(all_paths * 40, workers=2)
    assert len(found_by_workers) == 2 * 40 and contexts == ["forkserver"]


def test_imagenet_layout_hidden_and_non_image_files(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=4, n_valid=2)
    (root / "train" / "circle" / ".DS_Store").write_bytes(b"\x00")
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden_class").mkdir()
    (root / "train" / ".hidden_class" / "x.png").write_bytes(b"")
    folder = scan_image_folder(root)
    assert folder.layout == "imagenet"
    assert folder.valid_name == "val"
    assert folder.classes == ["circle", "square", "triangle"]
    assert len(folder.train) == 12 and len(folder.valid) == 6
    assert folder.ignored_files == 1  # notes.txt; hidden files are not even counted
    assert all(path.suffix == ".png" for path, _ in folder.train)


@pytest.mark.parametrize("name", ["valid", "test"])
def test_other_validation_folder_names(tmp_path, name):
    root = make_image_folder(tmp_path / "data", n_train=2, n_valid=2)
    (root / "val").rename(root / name)
    assert scan_image_folder(root).valid_name == name


def test_class_folders_with_valid_pct_split_every_class(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=10, n_valid=0)
    flat = root / "train"
    folder = scan_image_folder(flat, valid_pct=0.2, seed=3)
    assert folder.layout == "class-folders"
    assert len(folder.valid) == 6 and len(folder.train) == 24
    assert {label for _, label in folder.valid} == {0, 1, 2}
    assert not {p for p, _ in folder.valid} & {p for p, _ in folder.train}
    assert scan_image_folder(flat, valid_pct=0.2, seed=3).valid == folder.valid


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "data folder not found"),
        (lambda root: root.write_text("x"), "is a file, not a folder"),
        (lambda root: root.mkdir(), "is empty"),
        (lambda root: (root / "train").mkdir(parents=True), "has train/ but no val/"),
        (lambda root: _mk(root / "a.png"), "holds images but no class folders"),
        (lambda root: _mk(root / "cats" / "a.png"), r"only one class \(cats\)"),
        (lambda root: (root / "cats").mkdir(parents=True) or (root / "dogs").mkdir(), "no images in the class folders"),
        (lambda root: _mk(root / "cats" / "a.png") or _mk(root / "dogs" / "b.png"), r"set `valid_pct` \(e.g. 0.2\)"),
        (
            lambda root: (
                [_mk(root / s / c / "a.png") for s in ("train", "val") for c in ("a", "b")]
                and _mk(root / "val" / "c" / "x.png")
            ),
            r"validation classes differ from training classes \(not in train/: c\)",
        ),
    ],
)
def test_folder_errors_name_the_problem(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=message):
        scan_image_folder(root)


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def test_dropping_bad_images_keeps_the_rest_and_refuses_an_empty_class(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=3, n_valid=1)
    bad = write_bad_images(root / "train" / "circle")
    folder = scan_image_folder(root)
    found = find_bad_images([p for p, _ in folder.train])
    kept = drop_bad_images(folder, found)
    assert len(kept.train) == len(folder.train) - 2
    assert {b.path for b in kept.skipped} == set(bad)
    all_val = find_bad_images([p for p, _ in folder.valid])
    assert all_val == []
    with pytest.raises(DataError, match="validation has no image of class circle"):
        drop_bad_images(folder, [type(found[0])(p, "x") for p, label in folder.valid if label == 0])
