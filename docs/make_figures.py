"""Draw docs/img/preset-<name>.png: each preset's resolution per step for a 224 px run of 90 epochs.

python docs/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trdcli.core.presets import PRESETS  # noqa: E402

FULL_PX, EPOCHS, STEPS_PER_EPOCH = 224, 90, 100
OUT = Path(__file__).parent / "img"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    total = EPOCHS * STEPS_PER_EPOCH
    for name, preset in PRESETS.items():
        plan = preset.schedule().plan_px(total, FULL_PX, STEPS_PER_EPOCH)
        fig, ax = plt.subplots(figsize=(6, 1.8), dpi=100)
        epochs = [t / STEPS_PER_EPOCH for t in range(total)]
        if name in ("trd-alternate", "trd-spread"):
            ax.plot(epochs, plan, ".", markersize=0.6)  # random steps: dots, a line would be a solid block
        else:
            ax.step(epochs, plan, where="post", linewidth=1.2)
        ax.set_xlim(0, EPOCHS)
        ax.set_ylim(0, FULL_PX * 1.08)
        ax.set_yticks(sorted({int(plan.min()), FULL_PX}))
        ax.set_xlabel("epoch")
        ax.set_ylabel("px")
        ax.set_title(name, fontsize=10, loc="left")
        fig.tight_layout()
        fig.savefig(OUT / f"preset-{name}.png")
        plt.close(fig)


if __name__ == "__main__":
    main()
