"""Scheduled-resolution loading: crops decoded straight at each step's size, batches that arrive at the
schedule's sizes through shuffling, workers, resume, lr_find and fine_tune, and the time spent waiting."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from helpers import SHARED_DATA, epoch_counts, make_jpeg_folder, photo_like, ran, tiny_cnn
from PIL import Image

from trdcli.callbacks.trd import TRDCallback
from trdcli.core.errors import DataError
from trdcli.core.schedules import TRDSchedule
from trdcli.data.decode import _decode_reduced, draft_reduction, load_random_crop, random_crop_box
from trdcli.data.folders import scan_image_folder
from trdcli.data.loaders import build_dataloaders
from trdcli.data.sized_loader import sized_indices

FULL_PX, LOW_PX = 64, 32
# The draft and the plain decode of the same crop differ by rounding in libjpeg's scaled IDCT
# against a bilinear filter: at least this PSNR for every crop, and this for their median.
MIN_PSNR_DB, MEDIAN_PSNR_DB = 35.0, 40.0


def psnr_db(a, b) -> float:
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_sized_indices_pair_each_batch_with_its_size_and_drop_the_partial_tail():
    idxs = [7, 3, 9, 0, 5, 1, 8]
    assert sized_indices(idxs, 3, [112, 224]) == [(7, 112), (3, 112), (9, 112), (0, 224), (5, 224), (1, 224)]


@pytest.mark.parametrize(
    ("box", "out_px", "reduction"),
    [
        ((0, 0, 400, 300), 224, 1),  # 300 / 224 = 1.3
        ((0, 0, 400, 300), 112, 2),  # 300 / 112 = 2.7
        ((0, 0, 400, 300), 64, 4),  # 4.7
        ((10, 10, 410, 310), 32, 8),  # 9.4, and at most libjpeg's 1/8
        ((0, 0, 256, 700), 32, 8),  # exactly 256 / 32
        ((0, 0, 255, 700), 32, 4),
    ],
)
def test_draft_reduction_keeps_the_output_size_across_the_crop(box, out_px, reduction):
    assert draft_reduction(box, out_px) == reduction


def test_random_crop_box_stays_inside_and_covers_the_asked_area_and_aspect():
    torch.manual_seed(0)
    for width, height in ((500, 375), (375, 500), (64, 64)):
        for _ in range(200):
            left, top, right, bottom = random_crop_box(width, height, (0.35, 1.0))
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            crop_w, crop_h = right - left, bottom - top
            # Rounding each side to whole pixels moves the area and aspect by a pixel's worth.
            assert 0.35 - 2 / min(width, height) <= crop_w * crop_h / (width * height) <= 1.0
            assert 3 / 4 - 2 / min(crop_w, crop_h) <= crop_w / crop_h <= 4 / 3 + 2 / min(crop_w, crop_h)


def test_random_crop_box_falls_back_to_the_widest_central_crop_of_allowed_aspect():
    # A 1000 x 10 strip: no crop of 99% of the area has an aspect within [3/4, 4/3].
    assert random_crop_box(1000, 10, (0.99, 1.0)) == (493, 0, 506, 10)  # 10 * 4/3 = 13 px wide, centred


def test_a_jpeg_is_decoded_at_the_reduction_asked(tmp_path):
    path = tmp_path / "photo.jpg"
    photo_like(800, 600).save(path, quality=90)
    with Image.open(path) as image:
        assert _decode_reduced(image, 4) == 4.0
        image.load()
        assert image.size == (200, 150)
    png = tmp_path / "photo.png"
    photo_like(800, 600).save(png)
    with Image.open(png) as image:
        assert _decode_reduced(image, 4) == 1.0  # only JPEGs have a DCT to scale


def test_the_plain_path_is_torchvisions_resized_crop(tmp_path):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    path = tmp_path / "photo.jpg"
    photo_like(500, 375).save(path, quality=90)
    torch.manual_seed(3)
    ours = load_random_crop(path, 112, (0.35, 1.0), draft=False)
    torch.manual_seed(3)
    left, top, right, bottom = random_crop_box(500, 375, (0.35, 1.0))
    with Image.open(path) as image:
        theirs = TF.resized_crop(
            image.convert("RGB"), top, left, bottom - top, right - left, [112, 112], InterpolationMode.BILINEAR
        )
    # Identical inside; at the crop's edges the filter reads the photo around the box, where a
    # crop-then-resize sees the crop's own edge repeated.
    difference = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int))
    assert difference[2:-2, 2:-2].max() == 0 and 0 < difference.max() <= 8


@pytest.mark.parametrize("out_px", [32, 56, 112])
def test_the_draft_path_agrees_with_the_plain_path_on_photo_like_jpegs(tmp_path, out_px):
    psnrs = []
    for seed in range(12):
        path = tmp_path / f"{seed}.jpg"
        photo_like(500, 375, seed).save(path, quality=90)
        torch.manual_seed(seed)
        draft = load_random_crop(path, out_px, (0.35, 1.0), draft=True)
        torch.manual_seed(seed)
        plain = load_random_crop(path, out_px, (0.35, 1.0), draft=False)
        assert draft.size == plain.size == (out_px, out_px)
        psnrs.append(psnr_db(draft, plain))
    assert all(np.isfinite(psnrs))  # the draft path did decode differently: it ran
    assert min(psnrs) >= MIN_PSNR_DB and float(np.median(psnrs)) >= MEDIAN_PSNR_DB


def test_a_reduced_crop_is_the_full_size_crop_downsampled(tmp_path):
    # What a reduced step trains on, by definition: the full-resolution training image,
    # reduced. The independent reference: the full-size crop, reduced by trd's batch resize.
    from trdcli.core.resize import resize_batch

    path = tmp_path / "photo.jpg"
    photo_like(500, 375, seed=4).save(path, quality=90)
    for seed in range(6):
        torch.manual_seed(seed)
        full = load_random_crop(path, 224, (0.35, 1.0), draft=False)
        torch.manual_seed(seed)
        reduced = load_random_crop(path, 112, (0.35, 1.0), full_px=224)
        as_batch = torch.from_numpy(np.asarray(full, dtype=np.float32)).permute(2, 0, 1)[None]
        reference = resize_batch(as_batch, 112)[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
        assert psnr_db(reduced, reference) >= 45.0


def test_a_direct_crop_keeps_more_of_a_texture_at_the_full_resolutions_limit(tmp_path):
    # Stripes of a 3 px period: at 96 px they are near the limit, at 48 px beyond it. Reduced
    # from the full-size crop, what is left of them is what trd's batch resize leaves; a crop
    # resampled straight to 48 px in one pass leaves about twice as much.
    from trdcli.core.resize import resize_batch

    x = np.arange(104)
    row = 128 + 45 * np.sign(np.sin(2 * np.pi * x / 3 + 0.3))
    path = tmp_path / "stripes.png"
    Image.fromarray(np.tile(row, (104, 1)).astype(np.uint8)).convert("RGB").save(path)
    whole = (1.0, 1.0)  # the whole image (it is square): no randomness left in the box
    full = np.asarray(load_random_crop(path, 96, whole), dtype=np.float32)
    reference = resize_batch(torch.from_numpy(full).permute(2, 0, 1)[None], 48)[0, 0].numpy()
    reduced = np.asarray(load_random_crop(path, 48, whole, full_px=96), dtype=np.float32)[..., 0]
    direct = np.asarray(load_random_crop(path, 48, whole), dtype=np.float32)[..., 0]
    images = {"ref": reference, "reduced": reduced, "direct": direct}
    residue = {name: float(a[24, 4:-4].std()) for name, a in images.items()}
    assert abs(residue["reduced"] - residue["ref"]) < 0.5, residue
    assert residue["direct"] > 1.8 * residue["reduced"], residue


@pytest.mark.parametrize("draft", [True, False])
def test_exif_orientation_is_honoured_before_cropping(tmp_path, draft):
    # Displayed: 300 wide, 400 high, red on the left half, blue on the right. Stored rotated,
    # with EXIF orientation 6 ("rotate 90 clockwise to display").
    shown = np.zeros((400, 300, 3), dtype=np.uint8)
    shown[:, :150] = (255, 0, 0)
    shown[:, 150:] = (0, 0, 255)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)
    crop = np.asarray(load_random_crop(path, 16, (1.0, 1.0), draft=draft), dtype=int)  # the whole image
    assert crop[:, :6, 0].min() > 200 and crop[:, :6, 2].max() < 60  # left: red
    assert crop[:, -6:, 2].min() > 200 and crop[:, -6:, 0].max() < 60  # right: blue


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data/imagenette2-224 (real ImageNet JPEGs)")
def test_the_draft_path_agrees_with_the_plain_path_on_imagenette():
    files = sorted((SHARED_DATA / "train").glob("*/*.JPEG"))
    psnrs = []
    for i, path in enumerate(random.Random(0).sample(files, 100)):
        torch.manual_seed(i)
        draft = load_random_crop(path, 32, (0.35, 1.0), draft=True)  # 1/4 or 1/8 scale from 224 px photos
        torch.manual_seed(i)
        plain = load_random_crop(path, 32, (0.35, 1.0), draft=False)
        psnrs.append(psnr_db(draft, plain))
    assert float(np.median(psnrs)) >= MEDIAN_PSNR_DB and float(np.percentile(psnrs, 5)) >= MIN_PSNR_DB


class RecordSizes(Callback):
    """The size of every batch as it arrives, before TRDCallback (order -5) sees it."""

    order = -6

    def __init__(self):
        self.train_px: list[int] = []
        self.valid_px: set[int] = set()

    def before_batch(self):
        px = int(self.learn.xb[0].shape[-1])
        if self.learn.training:
            self.train_px.append(px)
        else:
            self.valid_px.add(px)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    return scan_image_folder(make_jpeg_folder(tmp_path_factory.mktemp("jpegs") / "data", n_train=12, n_valid=2))


def _learner(folder, schedule, workers=2, **trd_kwargs):
    dls = build_dataloaders(folder, FULL_PX, 8, workers=workers, device="cpu")  # 36 images: 4 batches, 4 left
    sizes = RecordSizes()
    trd = TRDCallback(schedule=schedule, **trd_kwargs)
    return Learner(dls, tiny_cnn(3), loss_func=CrossEntropyLossFlat(), cbs=[trd, sizes]), sizes


SCHEDULE = TRDSchedule(LOW_PX, until=1.0, prob=0.5, seed=7)  # both sizes in the first 4 steps


@pytest.mark.slow
def test_batches_arrive_at_the_planned_sizes_through_shuffled_epochs_with_two_workers(jpeg_folder):
    learn, sizes = _learner(jpeg_folder, SCHEDULE)
    with learn.no_logging(), learn.no_bar():
        learn.fit(3)
    planned = SCHEDULE.plan_px(12, FULL_PX).tolist()
    assert {FULL_PX, LOW_PX} <= set(planned)
    assert sizes.train_px == planned
    assert [r.px for r in learn.trd.records] == planned
    assert sizes.valid_px == {FULL_PX}


@pytest.mark.slow
def test_a_resumed_fit_continues_the_plan(jpeg_folder):
    first, sizes = _learner(jpeg_folder, SCHEDULE)
    with first.no_logging(), first.no_bar(), pytest.raises(KeyboardInterrupt):
        first.fit(3, cbs=[StopAfterEpoch(1)])
    planned = SCHEDULE.plan_px(12, FULL_PX).tolist()
    assert sizes.train_px == planned[:4]
    resumed, sizes = _learner(jpeg_folder, SCHEDULE)
    # What a checkpoint after epoch 1 keeps: the steps counted by epoch and resolution.
    resumed.trd.resume_from([g for g in first.trd.groups() if g.epoch == 0])
    with resumed.no_logging(), resumed.no_bar():
        resumed.fit(3, start_epoch=1)
    assert sizes.train_px == planned[4:]
    assert [r.px for r in resumed.trd.records] == planned[4:]  # the steps this process ran
    # The whole run's account: the first process's epoch and this one's.
    assert resumed.trd.summary().steps_by_px == {px: planned.count(px) for px in set(planned)}


class StopAfterEpoch(Callback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def after_epoch(self):
        if self.learn.epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_lr_find_and_recalibration_get_full_size_and_fine_tune_plans_each_fit(jpeg_folder):
    learn, sizes = _learner(jpeg_folder, SCHEDULE, workers=0, bn_recalibrate=2)
    with learn.no_logging(), learn.no_bar():
        learn.lr_find(num_it=5, show_plot=False)
        assert set(sizes.train_px) == {FULL_PX}
        sizes.train_px = []
        learn.fine_tune(2, freeze_epochs=1)
    first_fit, second_fit = SCHEDULE.plan_px(4, FULL_PX).tolist(), SCHEDULE.plan_px(8, FULL_PX).tolist()
    assert sizes.train_px == first_fit + second_fit
    # Each fit ended with a recalibration on 2 full-size training batches: 16 images.
    assert learn.recalibrate_bn.images_by_fit == {0: 16, 1: 16}
    batch = learn.dls.train.one_batch()
    assert batch[0].shape[-1] == FULL_PX  # a plan is spent by the pass it was made for


def test_without_resize_in_loader_the_callback_resizes_full_size_batches(jpeg_folder):
    learn, sizes = _learner(jpeg_folder, SCHEDULE, workers=0, resize_in_loader=False)
    with learn.no_logging(), learn.no_bar():
        learn.fit(1)
    assert set(sizes.train_px) == {FULL_PX}
    assert [r.px for r in learn.trd.records] == SCHEDULE.plan_px(4, FULL_PX).tolist()


def test_a_batch_at_the_wrong_size_is_an_error(jpeg_folder, monkeypatch):
    learn, _ = _learner(jpeg_folder, SCHEDULE, workers=0)
    monkeypatch.setattr(type(learn.dls.train), "plan_next_pass", lambda self, batch_px: None)  # ignores the plan
    with learn.no_logging(), learn.no_bar(), pytest.raises(DataError, match="delivered step 1 at 64 px; .* 32 px"):
        learn.fit(1)
    assert [r.px for r in learn.trd.records] == [FULL_PX]  # step 0 is full size anyway


def test_shards_are_disjoint_equal_and_each_global_batch_is_split_across_the_ranks():
    from trdcli.data.sized_loader import shard_indices

    idxs = list(range(100))[::-1]  # a shuffled order, the same on every rank
    shards = [shard_indices(idxs, 10, rank, 3) for rank in range(3)]
    # 100 items in global batches of 30: 3 whole ones; each rank takes its 10 of each.
    assert [len(s) for s in shards] == [30, 30, 30]
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[1]).isdisjoint(shards[2])
    assert shards[1][:10] == idxs[10:20] and shards[2][10:20] == idxs[50:60]
    assert sorted(sum(shards, [])) == sorted(idxs[:90])


def test_a_sharded_loader_has_exactly_the_batches_it_yields_and_the_ranks_share_out_each_epoch(jpeg_folder):
    # fastai's DistributedDL claims ceil(batches / ranks) batches and can yield fewer (fastai
    # #3579). Here 36 images, a global batch of 8 on 2 ranks (4 each): 4 whole global batches.
    from trdcli.data.loaders import image_dataloader

    def loader(rank):
        dl = image_dataloader(jpeg_folder.train, FULL_PX, 4, True, workers=0, device="cpu", rank=rank, world_size=2)
        dl.rng = random.Random(7)  # what set_seed(seed) before building gives every rank
        return dl

    plan = [32, 64, 64, 32]
    shares = []
    for rank in range(2):
        dl = loader(rank)
        dl.plan_next_pass(plan)
        shares.append(dl.get_idxs())
    assert [len(s) for s in shares] == [16, 16]
    assert {i for i, _ in shares[0]}.isdisjoint({i for i, _ in shares[1]})
    assert [px for _, px in shares[0]] == [px for _, px in shares[1]] == [px for px in plan for _ in range(4)]
    dl = loader(1)
    dl.plan_next_pass(plan)
    batches = list(dl)
    assert len(dl) == len(batches) == 4 and [b[0].shape for b in batches] == [(4, 3, px, px) for px in plan]


@pytest.mark.slow
def test_train_builds_the_loader_the_config_asks_for(jpeg_folder, monkeypatch):
    from trdcli.data import loaders as data_module
    from trdcli.run.config import TrainConfig
    from trdcli.run.train import train

    built = []
    real = data_module.build_dataloaders

    def spy(*args, **kwargs):
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "build_dataloaders", spy)
    config = TrainConfig(
        data=jpeg_folder.root, epochs=1, size_px=FULL_PX, batch_size=8, workers=0, schedule=SCHEDULE,
        out_dir=jpeg_folder.root.parent / "run-direct", direct_crops=True, scheduled_loading=True, check_images=False,
    )  # fmt: skip
    result = train(config)
    assert built[0]["crops"].direct_crops is True and built[0]["crops"].draft is True
    assert ran(result) == epoch_counts(SCHEDULE.plan_px(4, FULL_PX), 4)


def test_batches_bound_for_a_gpu_come_from_pinned_memory(jpeg_folder):
    # A loader for CUDA cannot be built without a GPU (fastai moves its transforms there): the rule
    # that decides it is checked on its own, and a CPU loader built for real.
    from trdcli.data.loaders import _on_cuda, image_dataloader

    assert [_on_cuda(d) for d in ("cuda", "cuda:1", torch.device("cuda", 0), "cpu", torch.device("cpu"), None)] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
    for train in (True, False):
        loader = image_dataloader(jpeg_folder.train, 64, 4, train, workers=1, device="cpu")
        assert loader.fake_l.pin_memory is False
        assert not loader.fake_l.persistent_workers  # fastai makes new workers every pass: not promised
