#!/usr/bin/env bash
# Every schedule family at the same compute, at the paper's resolutions: `trd compare --budget`
# on a class-balanced subset of imagenette2-224, ResNet-18 from scratch at 224 px (TRD at 112).
#
#   bash benchmarks/accuracy_budget.sh IMAGENETTE_DIR OUT_DIR
#
# The subset: the first TRAIN (default 64) training and VAL (default 30) validation images of
# each of the 10 classes (benchmarks/make_subset.py, symlinks under OUT_DIR). Batch 32, EPOCHS
# (default 5) epochs, lr 3e-3, on the CPU. Three passes, each a `trd compare` that reuses the
# runs the one before finished (a rerun of this script resumes where it stopped):
#   1. budget 0.35, seeds 0 and 1;  2. budgets 0.35 and 0.6, seed 0;  3. both budgets, seeds 0 and 1.
# Each pass prints its tables; the last complete one is the evidence. Nothing is selected on
# these numbers: every family's setting is solved from the budget by the cost model alone.
# TRD="python -m trdcli" with PYTHONPATH set runs a frozen copy of the code.
set -euo pipefail
src=${1:?usage: accuracy_budget.sh IMAGENETTE_DIR OUT_DIR}
out=${2:?usage: accuracy_budget.sh IMAGENETTE_DIR OUT_DIR}
train=${TRAIN:-64} val=${VAL:-30} epochs=${EPOCHS:-5}
trd=${TRD:-trd}
here=$(dirname "$0")
python "$here/make_subset.py" "$src" "$out/data" --train "$train" --val "$val"
run() {
  COLUMNS=160 $trd compare "$out/data" --arch resnet18 --size 224 --batch-size 32 --epochs "$epochs" --lr 3e-3 \
    --out "$out/compare-${epochs}ep" "$@"
}
run --budget 0.35 --seeds 0,1
run --budget 0.35 --budget 0.6 --seeds 0,
run --budget 0.35 --budget 0.6 --seeds 0,1
