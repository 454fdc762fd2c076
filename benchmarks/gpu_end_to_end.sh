#!/usr/bin/env bash
# The GPU path in one script (under 8 minutes on one H100): the feed check, ResNet-50 224 -> 112 px end
# to end with trd's real loader from the originals and from a `trd prepare` copy, mixed precision and
# channels_last, the model's own step rate at each size, and the wall-time speed-up against the FLOPs
# speed-up. Every figure goes into one JSON file, OUT_DIR/gpu_end_to_end.json; the log beside it.
#
#   bash benchmarks/gpu_end_to_end.sh [OUT_DIR]
#
# It writes IMAGES photo-like 500x375 JPEGs first (benchmarks/make_photos.py; real photos cost the
# same to decode). The settings are environment variables, so the tests run it on the CPU in seconds:
# ARCH (resnet50), FULL (224), LOW (112), IMAGES (6144), BATCH (256), DEVICE (cuda), REPEATS (2),
# FEED_SAMPLE (512), MEASURE_BATCH (BATCH), PRECISIONS ("fp16 bf16"), COMPILE_BACKEND (inductor), STEPS
# (10). On CUDA: mixed precision and channels_last; step 4 times fp16 and bf16, eager and compiled.
# TRD="python -m trdcli" with PYTHONPATH set runs a frozen copy of the code.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-gpu-bench-out}
arch=${ARCH:-resnet50} full=${FULL:-224} low=${LOW:-112} images=${IMAGES:-6144} batch=${BATCH:-256}
device=${DEVICE:-cuda} repeats=${REPEATS:-2} feed=${FEED_SAMPLE:-512} measure_batch=${MEASURE_BATCH:-$batch}
precisions=${PRECISIONS:-fp16 bf16} compile_backend=${COMPILE_BACKEND:-inductor} steps=${STEPS:-10}
# Without an installed `trd`, the repository's own code (a device machine gets the working tree).
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
trd=${TRD:-$(command -v trd >/dev/null 2>&1 && echo trd || echo "python -m trdcli")}
fast=()
[ "$device" = "cuda" ] && fast=(--mixed-precision --channels-last)
mkdir -p "$out"
data="$out/data"
[ -d "$data/train" ] || python "$here/make_photos.py" "$data/train" --images "$images"
[ -d "$data/val" ] || python "$here/make_photos.py" "$data/val" --images 20
run=(--size "$full" --low-res "$low" --epochs 1 --batch-size "$batch")  # what trd prepare plans its copy for
plan=(--arch "$arch" "${run[@]}")
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  # 1. The feed check on the originals, with the model's measured rate at each size.
  $trd estimate-cost "$data" "${plan[@]}" --measure --measure-batch "$measure_batch" --device "$device" \
    --feed-sample "$feed" --json > "$out/estimate_originals.json"
  # 2. The copy reduced steps read, then the feed check again: reduced sizes now read it.
  start=$(date +%s%N)
  $trd prepare "$data" "${run[@]}" --workers "$(nproc)"
  echo "prepare_s $(( ($(date +%s%N) - start) / 1000000 ))e-3" > "$out/prepare_time.txt"
  $trd estimate-cost "$data" "${plan[@]}" --feed-sample "$feed" --json > "$out/estimate_copy.json"
  # 3. End to end: baseline and TRD, from the originals and from the copy.
  python "$here/loader_end_to_end.py" "$data/train" --arch "$arch" --full "$full" --low "$low" \
    --images "$images" --batch "$batch" --repeats "$repeats" --device "$device" "${fast[@]}" \
    --prepared "$data-trd-${low}px" --data-root "$data" --json "$out/end_to_end.json"
  # 4. The model's step at each size in each precision, eager and compiled (compile time apart).
  python "$here/precision_compile_speed.py" --arch "$arch" --full "$full" --low "$low" --batch "$measure_batch" \
    --device "$device" --precisions $precisions --compile-backend "$compile_backend" --steps "$steps" \
    --repeats "$repeats" --json "$out/precision_compile.json"
} 2>&1 | tee "$out/gpu_end_to_end.log"
python "$here/gpu_summary.py" "$out"
