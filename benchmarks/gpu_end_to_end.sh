#!/usr/bin/env bash
# The GPU path, in one script under 5 minutes: ResNet-50, 224 -> 112 px, batch 256, mixed
# precision and channels_last, end to end with trd's real loader (benchmarks/loader_end_to_end.py),
# then the model's own step rate at 224 and 112 px (`trd estimate-cost --measure`).
#
#   bash benchmarks/gpu_end_to_end.sh [PHOTOS_DIR] [OUT_DIR]
#
# Without PHOTOS_DIR it writes 6,144 photo-like 500x375 JPEGs first (benchmarks/make_photos.py).
# Everything it prints is also written to OUT_DIR/gpu_end_to_end.txt (and the timings as JSON).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-gpu-bench-out}
mkdir -p "$out"
photos=${1:-}
if [ -z "$photos" ]; then
  photos="$out/photos"
  [ -d "$photos" ] || python "$here/make_photos.py" "$photos" --images 6144
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python "$here/loader_end_to_end.py" "$photos" --arch resnet50 --full 224 --low 112 --images 6144 \
    --batch 256 --repeats 2 --device cuda --mixed-precision --channels-last --json "$out/end_to_end.json"
  trd estimate-cost --arch resnet50 --dataset imagenet --epochs 90 --batch-size 256 --low-res 112 \
    --measure --measure-batch 256 --device cuda
} 2>&1 | tee "$out/gpu_end_to_end.txt"
