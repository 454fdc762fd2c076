#!/usr/bin/env bash
# Accuracy benchmark on real photos: `trd compare` on a class-balanced subset of imagenette2-224.
#
#   bash benchmarks/accuracy_imagenette.sh IMAGENETTE_DIR OUT_DIR SEEDS [SETTING ...]
#
# The subset is the first 300 training and 100 validation images of each of the 10 classes
# (benchmarks/make_subset.py, symlinks under OUT_DIR). The recipe: ResNet-18 from scratch at
# 112 px (half of imagenette2-224's 224), batch 64, 5 epochs, lr 3e-3, on the CPU; TRD reduces
# to 56 px. Without SETTINGs: the baseline and trd's default recipe; equal-compute baselines
# are added by `trd compare`. EPOCHS=10 trains longer (its own compare directory).
set -euo pipefail
src=${1:?usage: accuracy_imagenette.sh IMAGENETTE_DIR OUT_DIR SEEDS [SETTING ...]}
out=${2:?usage: accuracy_imagenette.sh IMAGENETTE_DIR OUT_DIR SEEDS [SETTING ...]}
seeds=${3:?usage: accuracy_imagenette.sh IMAGENETTE_DIR OUT_DIR SEEDS [SETTING ...]}
shift 3
[ $# -gt 0 ] || set -- baseline "trd:low_res=56"
here=$(dirname "$0")
python "$here/make_subset.py" "$src" "$out/data" --train 300 --val 100
args=()
for setting in "$@"; do args+=(--setting "$setting"); done
epochs=${EPOCHS:-5}
seeds_name=${seeds%,}  # "0," is seed 0 alone
name="compare-seeds-${seeds_name//,/-}"
[ "$epochs" = 5 ] || name="compare-${epochs}ep-seeds-${seeds_name//,/-}"
trd compare "$out/data" --arch resnet18 --size 112 --batch-size 64 --epochs "$epochs" --lr 3e-3 \
  --seeds "$seeds" --out "$out/$name" "${args[@]}"
