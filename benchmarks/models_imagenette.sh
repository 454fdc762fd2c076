#!/usr/bin/env bash
# A ViT and a ResNet with and without TRD on real photos (issue 40's target): `trd compare` of
# timm's ViT-Ti/16 and torchvision's ResNet-18, from scratch at 224 px, TRD reducing to 112 px (the
# paper's halving, trd's default reading), 3 epochs, batch 32, lr 1e-3, on a class-balanced subset of
# imagenette2-224 (TRAIN training and VAL validation images per class, benchmarks/make_subset.py).
#
#   bash benchmarks/models_imagenette.sh IMAGENETTE_DIR OUT_DIR [SEEDS]
#
# Needs the timm extra. On a 2-core CPU, TRD="python -m trdcli" with PYTHONPATH set runs a frozen
# copy; `taskset -c 0` and OMP_NUM_THREADS=1 keep it on one core. A rerun resumes what it finds.
set -euo pipefail
src=${1:?usage: models_imagenette.sh IMAGENETTE_DIR OUT_DIR [SEEDS]}
out=${2:?usage: models_imagenette.sh IMAGENETTE_DIR OUT_DIR [SEEDS]}
seeds=${3:-0,}
train=${TRAIN:-50} val=${VAL:-50}
trd=${TRD:-trd}
here=$(dirname "$0")
python "$here/make_subset.py" "$src" "$out/data" --train "$train" --val "$val"
for arch in resnet18 timm/vit_tiny_patch16_224; do
  COLUMNS=200 $trd compare "$out/data" --arch "$arch" --size 224 --batch-size 32 --epochs 3 --lr 1e-3 \
    --seeds "$seeds" --setting baseline --setting "trd:low_res=112" --no-equal-compute \
    --out "$out/compare-${arch//\//-}"
done
