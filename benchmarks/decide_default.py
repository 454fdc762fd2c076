"""Apply issue 43's rule for trd's default reading to a `trd compare --budget` result.

The rule, written down before the full-imagenette runs finished (docs/method.md): trd's default
reading (the `trd` family) changes only if another TRD reading at the same budget beats it by more
than both settings' standard deviations over three seeds; otherwise it stays. The TRD readings are
the families built on TRD's schedule: `window`, `falling` and `fixed`. FFCV's ramp and the others are
not TRD readings; they are compared in the README, not here.

    python benchmarks/decide_default.py OUT/compare-8ep/compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRD_READINGS = ("window", "falling", "fixed")
SEEDS_NEEDED = 3


def decide(payload: dict) -> list[str]:
    """One line per budget: the verdict, with the figures it rests on."""
    lines = []
    for budget in sorted({row["budget_frac"] for row in payload.get("budgets", [])}):
        rows = {row["family"]: row for row in payload["budgets"] if row["budget_frac"] == budget and row["reached"]}
        if "trd" not in rows:
            lines.append(f"{budget:.0%}: no trd row, nothing to decide")
            continue
        default = rows["trd"]["result"]
        readings = [f for f in TRD_READINGS if f in rows]
        fewest = min(len(rows[f]["result"]["seeds"]) for f in ["trd", *readings])
        if fewest < SEEDS_NEEDED:
            lines.append(f"{budget:.0%}: the rule needs {SEEDS_NEEDED} seeds of each reading; the fewest has {fewest}")
            continue
        beaten_by = []
        for family in readings:
            other = rows[family]["result"]
            margin = other["top1_mean"] - default["top1_mean"]
            if margin > max(other["top1_std"], default["top1_std"]):
                beaten_by.append(f"{family} (+{100 * margin:.1f} pts, {rows[family]['parameter']})")
        shown = f"trd {100 * default['top1_mean']:.1f}% ± {100 * default['top1_std']:.1f}%"
        if beaten_by:
            lines.append(f"{budget:.0%}: change the default: {shown} is beaten by {', '.join(beaten_by)}")
        else:
            lines.append(f"{budget:.0%}: the default stays: no TRD reading beats {shown} by more than both std")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compare_json", type=Path)
    args = parser.parse_args()
    for line in decide(json.loads(args.compare_json.read_text())):
        print(line)


if __name__ == "__main__":
    main()
