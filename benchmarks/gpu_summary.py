"""The one JSON of benchmarks/gpu_end_to_end.sh: every figure its steps wrote, side by side.

    python benchmarks/gpu_summary.py OUT_DIR

Reads OUT_DIR's estimate_originals.json and estimate_copy.json (`trd estimate-cost --json`: the model's
rates and the feed check), prepare_time.txt, end_to_end.json (benchmarks/loader_end_to_end.py) and
precision_compile.json (benchmarks/precision_compile_speed.py);
writes OUT_DIR/gpu_end_to_end.json and prints its headline figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _device_name() -> str:
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=True
        )
        return names.stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "no NVIDIA GPU (nvidia-smi absent or failed)"


def main() -> None:
    out = Path(sys.argv[1])
    originals = json.loads((out / "estimate_originals.json").read_text())
    copy = json.loads((out / "estimate_copy.json").read_text())
    end_to_end = json.loads((out / "end_to_end.json").read_text())
    prepare_s = float((out / "prepare_time.txt").read_text().split()[1])
    precision_compile = json.loads((out / "precision_compile.json").read_text())
    summary = {
        "device": _device_name(),
        "arch": originals["arch"],
        "full_px": originals["full_px"],
        "model_images_per_s": originals.get("throughput_images_per_s"),
        "model_rate_source": originals.get("throughput_source"),
        "feed_originals": originals.get("feed"),
        "feed_copy": copy.get("feed"),
        "prepare_s": prepare_s,
        "end_to_end": end_to_end["summary"],
        "end_to_end_args": end_to_end["args"],
        "precision_compile": precision_compile,
    }
    (out / "gpu_end_to_end.json").write_text(json.dumps(summary, indent=1))
    print(f"{summary['device']}: {summary['arch']} at {summary['full_px']} px")
    for setting, row in summary["end_to_end"].items():
        print(
            f"  {setting:<11} wall {row['wall_speedup']:.2f}x  FLOPs {row['flops_speedup']:.2f}x  "
            f"wall/FLOPs {row['wall_over_flops']:.2f}  data wait {100 * row['data_wait_frac_median']:.1f}%"
        )
    fastest = precision_compile["fastest"]
    print(
        f"  fastest step: {fastest['precision']}{' compiled' if fastest['compiled'] else ''}, reduced step "
        f"{fastest['low_speedup']:.2f}x faster ({fastest['low_speedup_over_flops']:.2f} of its FLOPs speed-up)"
    )
    print(f"  everything: {out / 'gpu_end_to_end.json'}")


if __name__ == "__main__":
    main()
