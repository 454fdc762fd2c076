#!/usr/bin/env bash
# Wall time saved on real photos, loader before and after: `trd train` on imagenette2-224,
# ResNet-18 from scratch at 64 px, 5 epochs, batch 64, TRD at 32 px until 0.9 (the figure the
# docs quoted before scheduled loading: 67.5% of the compute saved, 32% of the wall time).
#
#   bash benchmarks/loader_imagenette.sh IMAGENETTE_DIR OUT_DIR
#
# Four runs, one at a time (two trainings at once would share the cores): baseline and TRD with
# the old loader (--no-scheduled-loading: decode in full, crop to 64 px, the callback resizes),
# then both with scheduled loading (the default). Prints one line per run from its run.json.
set -euo pipefail
src=${1:?usage: loader_imagenette.sh IMAGENETTE_DIR OUT_DIR}
out=${2:?usage: loader_imagenette.sh IMAGENETTE_DIR OUT_DIR}
common=(--arch resnet18 --size 64 --epochs 5 --batch-size 64 --no-check-images --json)
for loader in no-scheduled-loading scheduled-loading; do
  trd train "$src" "${common[@]}" --$loader --out "$out/$loader-baseline" > "$out/$loader-baseline.json"
  trd train "$src" "${common[@]}" --$loader --low-res 32 --until 0.9 --out "$out/$loader-trd" > "$out/$loader-trd.json"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'loader':<22} {'run':<9} {'top-1':>6} {'saved':>6} {'wall s':>7} {'wall saved':>10} {'data wait':>9}")
for loader in ("no-scheduled-loading", "scheduled-loading"):
    runs = {name: json.loads((out / f"{loader}-{name}.json").read_text()) for name in ("baseline", "trd")}
    for name, run in runs.items():
        saved = 1 - run["wall_time_s"] / runs["baseline"]["wall_time_s"]
        wait = run["data_wait"]["wait_frac"]
        print(f"{loader:<22} {name:<9} {100 * run['metrics']['top1']:>5.1f}% {100 * run['compute_saved_frac']:>5.1f}%"
              f" {run['wall_time_s']:>7.0f} {100 * saved:>9.1f}% {100 * wait:>8.1f}%")
PY
