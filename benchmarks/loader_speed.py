"""What does the loader pay for one training image, at full and at reduced size, old path against new?

One process, so the figures are per loader worker. For every image of a sample, interleaved
round by round (a slow moment of the machine hits every path alike), the worker's whole job
for one image (open, random-resized crop, flip, to a uint8 tensor) on:

  old, full     trd's worker code before scheduled loading (``before_item``, kept verbatim
                below): decode in full, crop to --full with torchvision     (a full step before)
  old, reduced  the same, then trd's antialiased batch resize to --low, the resize's cost per
                image measured on batches of 64                              (a reduced step before)
  new, full     ``trdcli.data.loaders.ImageItems`` now: draft decode (JPEG DCT scaling where the crop
                allows), crop to --full                                     (a full step now)
  new, reduced  the same crop at --full, downsampled to --low in the worker (a reduced step now)
  new, direct   draft decode, crop straight to --low in one pass           (--direct-crops)
  copy, reduced with --prepared: the same crop as "new, reduced", read from a ``trd prepare`` copy
                of the sample (made first, in a temporary folder)          (a reduced step from the copy)

Prints the median ms per image over --repeats passes and the ratios to the old full path; with
--prepared also the copy's own cost (ms per image to make, bytes against the originals') and how
close its reduced images are to the originals' (PSNR of each image's "copy, reduced" against its
"new, reduced", the same random crop: median and worst).

    python benchmarks/loader_speed.py /work/data/imagenet-sample --full 224 --low 112 --images 300
    python benchmarks/loader_speed.py ../shared/data/imagenette2-224/train --full 64 --low 32
    python benchmarks/loader_speed.py IMAGENET_SAMPLE --full 224 --low 112 --images 300 --prepared
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from trdcli.core.resize import resize_batch
from trdcli.data.decode import load_rgb
from trdcli.data.folders import IMAGE_SUFFIXES
from trdcli.data.loaders import CropOptions, ImageItems

PATHS = ("old, full", "old, reduced", "new, full", "new, reduced", "new, direct", "copy, reduced")


def sample_images(folder: Path, count: int, seed: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {folder}")
    return random.Random(seed).sample(files, min(count, len(files)))


def before_item(path: Path, size_px: int, min_scale: float):
    """A training item as trd's worker made it before scheduled loading (trdcli/data/folders.py at b0a0bf0)."""
    from fastai.torch_core import TensorImage
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T
    from torchvision.transforms.v2 import functional as TF

    image = load_rgb(path).copy()  # its load_rgb ended in convert("RGB"), a copy even of an RGB image
    top, left, height, width = T.RandomResizedCrop.get_params(image, scale=(min_scale, 1.0), ratio=(3 / 4, 4 / 3))
    bilinear = InterpolationMode.BILINEAR
    image = TF.resized_crop(image, top, left, height, width, [size_px, size_px], bilinear, antialias=True)
    if torch.rand(()) < 0.5:
        image = TF.horizontal_flip(image)
    return TensorImage(TF.pil_to_tensor(image))


def ms_per_image(item, n: int) -> float:
    torch.manual_seed(0)  # every path draws the same random numbers
    start = time.perf_counter()
    for i in range(n):
        item(i)
    return 1000 * (time.perf_counter() - start) / n


def resize_ms_per_image(full_px: int, low_px: int, repeats: int = 5) -> float:
    batch = torch.randint(0, 256, (64, 3, full_px, full_px), dtype=torch.uint8).float()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        resize_batch(batch, low_px)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of images (searched recursively)")
    parser.add_argument("--full", type=int, default=224)
    parser.add_argument("--low", type=int, default=112)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-scale", type=float, default=0.35)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--prepared", action="store_true", help="also time reduced steps from a trd prepare copy")
    parser.add_argument("--quality", type=int, default=90, help="the copy's JPEG quality")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a loader worker runs single-threaded (fastai sets it so)

    paths = sample_images(args.folder, args.images, seed=0)
    items = [(path, 0) for path in paths]
    new = ImageItems(items, args.full, train=True, crops=CropOptions(args.min_scale, draft=True))
    direct = ImageItems(items, args.full, train=True, crops=CropOptions(args.min_scale, draft=True, direct_crops=True))
    copy_items, copy_stats = (
        prepared_items(args.folder, items, args.full, args.low, args.min_scale, args.quality)
        if args.prepared
        else (None, {})
    )
    runs: dict[str, list[float]] = {name: [] for name in PATHS if copy_items is not None or name != "copy, reduced"}
    for _ in range(args.repeats):
        old_full = ms_per_image(lambda i: before_item(paths[i], args.full, args.min_scale), len(items))
        runs["old, full"].append(old_full)
        runs["old, reduced"].append(old_full + resize_ms_per_image(args.full, args.low))
        runs["new, full"].append(ms_per_image(lambda i: new[i, args.full], len(items)))
        runs["new, reduced"].append(ms_per_image(lambda i: new[i, args.low], len(items)))
        runs["new, direct"].append(ms_per_image(lambda i: direct[i, args.low], len(items)))
        if copy_items is not None:
            runs["copy, reduced"].append(ms_per_image(lambda i: copy_items[i, args.low], len(items)))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"{len(items)} images from {args.folder}, {args.full} -> {args.low} px, median of {args.repeats} passes")
    print(f"{'path':<14} {'ms/image':>9} {'vs old full':>12}")
    for name in medians:
        print(f"{name:<14} {medians[name]:>9.2f} {medians[name] / medians['old, full']:>11.2f}x")
    print(f"reduced / full step, per worker: old {medians['old, reduced'] / medians['old, full']:.2f}x, "
          f"new {medians['new, reduced'] / medians['new, full']:.2f}x, "
          f"direct {medians['new, direct'] / medians['new, full']:.2f}x")  # fmt: skip
    if copy_items is not None:
        psnr = psnr_copy_against_originals(new, copy_items, args.low)
        copy_stats.update(psnr_median_db=statistics.median(psnr), psnr_worst_db=min(psnr))
        print(f"copy, reduced / new, full: {medians['copy, reduced'] / medians['new, full']:.2f}x (target 0.35x)")
        print(f"the copy: {copy_stats['make_ms_per_image']:.1f} ms per image to make, "
              f"{copy_stats['copy_bytes'] / copy_stats['source_bytes']:.0%} of the originals' bytes "
              f"({copy_stats['kept']} of {len(items)} kept as they are); its reduced images against the "
              f"originals': PSNR median {copy_stats['psnr_median_db']:.1f} dB, "
              f"worst {copy_stats['psnr_worst_db']:.1f} dB")  # fmt: skip
    if args.json:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "runs_ms": runs, "copy": copy_stats}
        args.json.write_text(json.dumps(payload))


def prepared_items(folder: Path, items, full_px: int, low_px: int, min_scale: float, quality: int = 90):
    """ImageItems reading a fresh trd prepare copy of the sample for reduced steps, and the copy's figures."""
    import tempfile

    from trdcli.data.prepare import PrepareSettings, copies_for, prepare_copy

    out = Path(tempfile.mkdtemp(prefix="trd-copy-"))
    paths = [path for path, _ in items]
    start = time.perf_counter()
    result = prepare_copy(folder, paths, out, PrepareSettings(low_px, min_scale, quality))
    make_ms = 1000 * (time.perf_counter() - start) / len(paths)
    copies = copies_for(folder, paths, out)
    crops = CropOptions(min_scale, draft=True)
    stats = {"make_ms_per_image": make_ms, "source_bytes": result.source_bytes, "copy_bytes": result.copy_bytes,
             "kept": result.kept, "out_dir": str(out)}  # fmt: skip
    return ImageItems(items, full_px, train=True, crops=crops, copies=copies), stats


def psnr_copy_against_originals(new: ImageItems, copy: ImageItems, low_px: int) -> list[float]:
    """PSNR of each image's reduced crop from the copy against the same crop (same seed) from the original."""
    out = []
    for i in range(len(new)):
        torch.manual_seed(i)
        a = new[i, low_px][0].double()
        torch.manual_seed(i)
        b = copy[i, low_px][0].double()
        error = float(((a - b) ** 2).mean())
        out.append(float("inf") if error == 0 else 10 * torch.log10(torch.tensor(255.0**2 / error)).item())
    return out


if __name__ == "__main__":
    main()
