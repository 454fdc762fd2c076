#!/usr/bin/env bash
# --compile on the CPU (issue 42's target): ResNet-18 at 128 -> 64 px with trd's default reading, 2 epochs
# on a class-balanced subset of imagenette2-224 (TRAIN and VAL images per class), eager and compiled with
# inductor, then the model's own step rate at each size eager and compiled (compile time apart).
#
#   bash benchmarks/compile_cpu.sh IMAGENETTE_DIR OUT_DIR
#
# Prints each run's graphs planned and compiled, recompile reasons and wall time (run.json), and writes
# OUT_DIR/step_rates.json (benchmarks/precision_compile_speed.py). TRD="python -m trdcli" with PYTHONPATH
# set runs a frozen copy; `taskset -c 0` and OMP_NUM_THREADS=1 keep it on one core.
set -euo pipefail
src=${1:?usage: compile_cpu.sh IMAGENETTE_DIR OUT_DIR}
out=${2:?usage: compile_cpu.sh IMAGENETTE_DIR OUT_DIR}
train=${TRAIN:-32} val=${VAL:-10}
trd=${TRD:-trd}
here=$(dirname "$0")
python "$here/make_subset.py" "$src" "$out/data" --train "$train" --val "$val"
args=(--arch resnet18 --size 128 --low-res 64 --epochs 2 --batch-size 32 --workers 0 --seed 0)
for mode in eager compiled; do
  extra=()
  [ "$mode" = eager ] || extra=(--compile)
  [ -f "$out/$mode/run.json" ] || $trd train "$out/data" "${args[@]}" "${extra[@]}" --out "$out/$mode" > /dev/null
  python - "$out/$mode/run.json" "$mode" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
record = run.get("compile") or {}
print(f"{sys.argv[2]:<8} top-1 {run['metrics']['top1']:.1%}  wall {run['wall_time_s']:.0f} s  steps {run['steps_by_px']}  "
      f"graphs {record.get('graphs', '-')} of {len(record.get('planned_graphs', [])) or '-'} planned  "
      f"recompiles {record.get('recompiles', '-')}")
PY
done
python "$here/precision_compile_speed.py" --arch resnet18 --full 128 --low 64 --batch 32 --device cpu \
  --precisions fp32 --compile-backend inductor --steps 3 --repeats 5 --json "$out/step_rates.json"
