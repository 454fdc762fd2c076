#!/usr/bin/env bash
# What drives TRD's lead in `trd demo`: `trd compare` on the demo's data, 3 seeds.
#
#   bash benchmarks/demo_ablation.sh OUT_DIR [SEEDS]
#
# The data is trd demo's texture-shortcut shapes (120 training / 40 validation images per shape,
# fixed seed 0, the demo's own), with 100 cue-conflict images per shape instead of the demo's 24,
# so the shape bias's 95% interval is narrower than +-10 points. The recipe is the demo's (ResNet-18
# from scratch at 96 px, batch 32, 8 epochs, lr 3e-3, crops of at least 60% of the image, CPU).
# Settings: the baseline; the baseline with the same BatchNorm recalibration TRD gets (8 batches);
# TRD at 48 px (trd's default reading) without recalibration; trd's default (recalibrated on the
# training view); and trd's default recalibrated on the test-time view. Then the shape bias of every
# run on the conflict split, with Wilson intervals (benchmarks/shape_bias_table.py).
# TRD="python -m trdcli" with PYTHONPATH set runs a frozen copy of the code.
set -euo pipefail
out=${1:?usage: demo_ablation.sh OUT_DIR [SEEDS]}
seeds=${2:-0,1,2}
trd=${TRD:-trd}
here=$(dirname "$0")
python -c "from pathlib import Path; from trdcli.cli.demo import make_texture_shortcut_dataset as m; m(Path('$out/data'), 120, 40, 100, seed=0)"
COLUMNS=160 $trd compare "$out/data" --arch resnet18 --size 96 --batch-size 32 --epochs 8 --lr 3e-3 --min-scale 0.6 \
  --device cpu --seeds "$seeds" --no-equal-compute --out "$out/compare" \
  --setting baseline \
  --setting "baseline+recal:bn_recalibrate=8" \
  --setting "trd-no-recal:low_res=48,bn_recalibrate=0" \
  --setting "trd:low_res=48" \
  --setting "trd+test-view:low_res=48,bn_recal_view=test"
if [ -f "$here/shape_bias_table.py" ]; then
  python "$here/shape_bias_table.py" "$out/compare" "$out/data/conflict" --size 96
fi
