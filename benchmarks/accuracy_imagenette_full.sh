#!/usr/bin/env bash
# TRD's claim with enough data to tell: `trd compare --budget 0.35` on ALL of imagenette2-224
# (9,469 training and 3,925 validation photos), ResNet-18 from scratch at 112 px, TRD reducing to
# 56 px (the paper's halving), 8 epochs for the baseline, batch 64, lr 3e-3 (trd's default recipe),
# seeds 0, 1 and 2.
#
#   bash benchmarks/accuracy_imagenette_full.sh IMAGENETTE_DIR OUT_DIR
#
# Settings: the full baseline, and at 35% of its compute trd's default reading (`trd`), the paper's
# window (`window`) and FFCV's ramp (`ffcv`), each solved from the budget by the cost model alone.
# FAMILIES="trd window ffcv falling fixed fewer-epochs" adds the optional ones.
#
# Three passes, each a `trd compare` into the same OUT_DIR/compare-8ep that reuses every run the
# one before finished (a rerun of this script resumes where it stopped, and so does a stopped run):
#   1. seed 0 of every setting;  2. seeds 0 and 1;  3. seeds 0, 1 and 2.
# Each pass prints its table; the last complete one is the evidence. A pass that did not finish
# leaves its finished runs for the next.
#
# On a GPU this is minutes. On a 2-core CPU: TRD="python -m trdcli" with PYTHONPATH set runs a
# frozen copy of the code, and `taskset -c 1` with OMP_NUM_THREADS=1 keeps it on one core.
# EPOCHS, SIZE, BATCH and WORKERS change the recipe (their own compare directory); the reduced size
# is always half of SIZE (`--budget`'s families reduce to half the full size).
set -euo pipefail
src=${1:?usage: accuracy_imagenette_full.sh IMAGENETTE_DIR OUT_DIR}
out=${2:?usage: accuracy_imagenette_full.sh IMAGENETTE_DIR OUT_DIR}
epochs=${EPOCHS:-8} size=${SIZE:-112} batch=${BATCH:-64}
families=${FAMILIES:-trd window ffcv}
trd=${TRD:-trd}
family_args=()
for family in $families; do family_args+=(--family "$family"); done
worker_args=()
[ -z "${WORKERS:-}" ] || worker_args=(--workers "$WORKERS")
name="compare-${epochs}ep"
[ "$size/$batch" = 112/64 ] || name="compare-${epochs}ep-${size}px-b${batch}"
run() {
  COLUMNS=200 $trd compare "$src" --arch resnet18 --size "$size" --batch-size "$batch" \
    --epochs "$epochs" --lr 3e-3 --budget 0.35 "${family_args[@]}" "${worker_args[@]}" \
    --out "$out/$name" "$@"
}
run --seeds 0,
run --seeds 0,1
run --seeds 0,1,2
