#!/usr/bin/env bash
# BatchNorm recalibration on the training view or the test-time view: `trd compare`, 2 seeds.
#
#   bash benchmarks/bn_recal_view.sh IMAGENETTE_DIR OUT_DIR
#
# 1. trd demo's random-texture shapes (benchmarks/accuracy_demo.sh's data and recipe: ResNet-18 at
#    64 px, batch 32, 8 epochs, lr 3e-3, crops of at least 60%), TRD at 48 px.
# 2. The class-balanced imagenette2-224 subset of benchmarks/accuracy_budget.sh (64 training and 30
#    validation images per class; ResNet-18 at 224 px, batch 32, 5 epochs, lr 3e-3), TRD at 112 px.
# Each: trd's default reading, recalibrated (8 batches) on the training view and on the test-time
# view; seeds 0 and 1. The texture-shortcut demo's own trial is in benchmarks/demo_ablation.sh.
# TRD="python -m trdcli" with PYTHONPATH set runs a frozen copy of the code.
set -euo pipefail
src=${1:?usage: bn_recal_view.sh IMAGENETTE_DIR OUT_DIR}
out=${2:?usage: bn_recal_view.sh IMAGENETTE_DIR OUT_DIR}
trd=${TRD:-trd}
here=$(dirname "$0")
python -c "from pathlib import Path; from trdcli.cli.demo import make_shapes_dataset; make_shapes_dataset(Path('$out/shapes'))"
COLUMNS=160 $trd compare "$out/shapes" --arch resnet18 --size 64 --batch-size 32 --epochs 8 --lr 3e-3 --min-scale 0.6 \
  --device cpu --seeds 0,1 --no-equal-compute --out "$out/compare-shapes" \
  --setting "train-view:low_res=48" --setting "test-view:low_res=48,bn_recal_view=test"
python "$here/make_subset.py" "$src" "$out/imagenette" --train 64 --val 30
COLUMNS=160 $trd compare "$out/imagenette" --arch resnet18 --size 224 --batch-size 32 --epochs 5 --lr 3e-3 \
  --device cpu --seeds 0,1 --no-equal-compute --out "$out/compare-imagenette" \
  --setting "train-view:low_res=112" --setting "test-view:low_res=112,bn_recal_view=test"
