"""One rank of a two-rank gloo test, started by torchrun from tests/test_distributed.py:
``python tests/rank_worker.py MODE OUT_DIR``. Each mode exercises one collective of a run on real
processes and writes what this rank saw to ``OUT_DIR/rank<N>.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

SIGNAL_AT_STEP = 20  # the training step (0-based) after which rank 1 alone receives SIGTERM


def sigterm(ranks, out: dict) -> None:
    from fastai.callback.core import Callback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from helpers import tensor_dls, tiny_cnn

    from trdcli.run.callbacks import StopOnSigterm
    from trdcli.run.faults import Preempted

    calls, real = [0], dist.all_reduce

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    dist.all_reduce = counted
    signals: list[int] = []

    class SignalAt(Callback):
        order = 80  # after_batch, before StopOnSigterm's (90): the signal lands within the step

        def after_batch(self):
            if ranks.rank == 1 and self.learn.iter == SIGNAL_AT_STEP:
                signals.append(15)

    learn = Learner(tensor_dls(n_train=400, bs=4), tiny_cnn(), loss_func=CrossEntropyLossFlat(),
                    cbs=[StopOnSigterm(signals, ranks), SignalAt()])  # fmt: skip
    try:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
        out["stopped_at"] = None
    except Preempted:
        out["stopped_at"] = learn.iter
    out["all_reduces"] = calls[0]


def on_main_raises(ranks, out: dict) -> None:
    from trdcli.core.errors import TRDError
    from trdcli.run.distributed import on_main

    def action():
        raise RuntimeError("an internal bug on rank 0")

    try:
        on_main(action, ranks)
        out["raised"] = None
    except TRDError as exc:
        out["raised"], out["message"] = "TRDError", str(exc)
    except RuntimeError as exc:
        out["raised"], out["message"] = "RuntimeError", str(exc)


def recalibrated_statistics(data: Path, ranks) -> tuple[list[list[float]], list[list[float]]]:
    """BatchNorm's statistics of one fixed network after trd's recalibration on ``data``'s training
    images (the test-time view, 3 global batches of 8): this rank's own, and what its model holds once
    they are shared over the ranks as ``trd train`` shares them."""
    import torch
    from helpers import tiny_cnn

    from trdcli.callbacks.batchnorm import batchnorm_layers, evaluation_view, recalibrate_batchnorm
    from trdcli.data.folders import scan_image_folder
    from trdcli.data.loaders import image_dataloader
    from trdcli.run.distributed import average_batchnorm_statistics

    torch.manual_seed(0)
    model = tiny_cnn()
    folder = scan_image_folder(data)
    loader = image_dataloader(folder.train, 64, 8 // ranks.world_size, True, workers=0, device="cpu",
                              rank=ranks.rank, world_size=ranks.world_size)  # fmt: skip
    loader.seed_next_pass(0, 0)
    with evaluation_view(loader):
        recalibrate_batchnorm(model, loader, 3)

    def statistics():
        return [t.tolist() for layer in batchnorm_layers(model) for t in (layer.running_mean, layer.running_var)]

    own = statistics()
    average_batchnorm_statistics(model, ranks)
    return own, statistics()


def recalibrate(ranks, out: dict) -> None:
    out["own"], out["statistics"] = recalibrated_statistics(Path(sys.argv[3]), ranks)


MODES = {"sigterm": sigterm, "on_main_raises": on_main_raises, "recalibrate": recalibrate}


def main() -> None:
    from trdcli.run.distributed import launch_ranks

    mode, out_dir = sys.argv[1], Path(sys.argv[2])
    ranks = launch_ranks()
    dist.init_process_group("gloo")
    out: dict = {"rank": ranks.rank}
    try:
        MODES[mode](ranks, out)
    finally:
        (out_dir / f"rank{ranks.rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
