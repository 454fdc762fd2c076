#!/usr/bin/env bash
# Accuracy benchmark on the demo's data: `trd compare` over TRD readings and BatchNorm handling.
#
#   bash benchmarks/accuracy_demo.sh OUT_DIR SEEDS [SETTING ...]
#
# The data is trd demo's generated shapes (480 training / 160 validation images, fixed seed 0);
# the recipe is the demo's (ResNet-18 from scratch at 64 px, batch 32, 8 epochs, lr 3e-3, crops
# of at least 60% of the image), on the CPU. Without SETTINGs it compares the candidates of
# docs/method.md. Pick settings on one set of seeds, report them on another.
set -euo pipefail
out=${1:?usage: accuracy_demo.sh OUT_DIR SEEDS [SETTING ...]}
seeds=${2:?usage: accuracy_demo.sh OUT_DIR SEEDS [SETTING ...]}
shift 2
if [ $# -eq 0 ]; then
  set -- baseline \
    "window:low_res=48,until=0.9" \
    "window+recal:low_res=48,until=0.9,bn_recalibrate=8" \
    "window+private:low_res=48,until=0.9,bn_mode=private" \
    "spread+recal:low_res=48,until=1.0,prob=0.9,bn_recalibrate=8" \
    "spread+private:low_res=48,until=1.0,prob=0.9,bn_mode=private" \
    "tail+recal:low_res=48,until=0.95,prob=0.947,bn_recalibrate=8"
fi
python -c "from pathlib import Path; from trdcli.cli.demo import make_shapes_dataset; make_shapes_dataset(Path('$out/data'))"
seeds_name=${seeds%,}  # "0," is seed 0 alone
args=()
for setting in "$@"; do args+=(--setting "$setting"); done
trd compare "$out/data" --arch resnet18 --size 64 --batch-size 32 --epochs 8 --lr 3e-3 --min-scale 0.6 \
  --device cpu --seeds "$seeds" --out "$out/compare-seeds-${seeds_name//,/-}" "${args[@]}"
