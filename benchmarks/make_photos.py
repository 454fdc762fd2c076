"""A folder of photo-like JPEGs at ImageNet's typical size, for loader timings where no real photos are at hand.

    python benchmarks/make_photos.py /tmp/photos --images 6144 --width 500 --height 375

``trdcli.data.photos.photo_like`` images at quality 90: decoding them costs what a real photo of the
same size costs. Use real photos where you have them (EliSchwartz/imagenet-sample-images,
imagenette); this is the fallback for a machine without.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from trdcli.data.photos import photo_like


def write_one(seed: int, out: Path, width: int, height: int) -> None:
    folder = out / f"class{seed % 10}"
    folder.mkdir(parents=True, exist_ok=True)
    photo_like(width, height, seed).save(folder / f"{seed:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=6144)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    args = parser.parse_args()
    with ProcessPoolExecutor() as pool:
        list(pool.map(partial(write_one, out=args.out, width=args.width, height=args.height), range(args.images)))


if __name__ == "__main__":
    main()
