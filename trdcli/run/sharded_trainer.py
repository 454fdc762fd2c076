"""``ShardedTrainer``: fastai's ``DistributedTrainer`` (DDP through Hugging Face accelerate) for a run
whose training loader shards itself.

Imported only by a distributed run: fastai's distributed module needs accelerate, an optional
dependency (``pip install "trdcli[distributed]"``).
"""

from __future__ import annotations

from accelerate import DistributedDataParallelKwargs
from fastai.distributed import DistributedTrainer


class ShardedTrainer(DistributedTrainer):
    """Wraps the model in DDP (SyncBatchNorm on CUDA) and leaves the loaders alone.

    trd's training loader (:class:`~trdcli.data.sized_loader.SizedBatchesDL`) already holds this
    rank's share of every global batch; fastai's ``DistributedDL`` would shard it again, claim
    more batches than it yields (fastai #3579) and broadcast indices with ``.cuda()``, which a
    CPU run cannot. Validation runs in full on every rank, so every rank's metrics are the
    same computation; rank 0 reports them.
    """

    def __init__(self, device, unused_parameters: bool = False):
        # Private BatchNorm (trdcli.callbacks.batchnorm) leaves one copy of each layer without gradients at every step:
        # DDP must then look for parameters the step did not use, or it stops at the next step waiting
        # for their reduction ("Expected to have finished reduction in the prior iteration").
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if unused_parameters else None
        super().__init__(sync_bn=device.type == "cuda", cpu=device.type != "cuda", kwargs_handlers=handlers)

    def _wrap_dl(self, dl):
        return dl
