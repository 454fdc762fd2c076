"""A class-balanced subset of an ImageNet-layout folder, as symlinks (nothing is copied).

    python benchmarks/make_subset.py ../shared/data/imagenette2-224 /tmp/imagenette-300 --train 300 --val 100

Takes the first N images of each class in sorted file order (deterministic), for `trd compare`
runs sized to a CPU. Keep the subset outside the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trdcli.data.folders import VALID_FOLDER_NAMES, scan_image_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--train", type=int, required=True, help="training images per class")
    parser.add_argument("--val", type=int, required=True, help="validation images per class")
    args = parser.parse_args()
    folder = scan_image_folder(args.source)
    valid_name = folder.valid_name or VALID_FOLDER_NAMES[0]
    for split, items, per_class in (("train", folder.train, args.train), (valid_name, folder.valid, args.val)):
        for label, name in enumerate(folder.classes):
            paths = sorted(path for path, item_label in items if item_label == label)[:per_class]
            target = args.dest / split / name
            target.mkdir(parents=True, exist_ok=True)
            for path in paths:
                link = target / path.name
                if not link.exists():
                    link.symlink_to(path.resolve())
    print(f"{args.dest}: {len(folder.classes)} classes, {args.train} train + {args.val} {valid_name} images each")


if __name__ == "__main__":
    main()
