"""One run, many processes: what the launcher told this process, the process group, and the few
collectives a run needs (rank 0 decides, the others hear it; counts are summed).

trd has no launcher of its own: ``torchrun`` (or ``accelerate launch``) starts one process per
device and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; every process runs the same
``trd train``. Without them, a run is one process and every function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trdcli.core.errors import ConfigError, OtherRankFailed, TRDError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine, which share its cores

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_ranks(env: Mapping[str, str] = os.environ) -> Ranks:
    """The ranks a launcher (torchrun, accelerate launch, SLURM via torchrun) gave this process."""
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ConfigError(f"the launcher's WORLD_SIZE, RANK or LOCAL_RANK is not a number ({exc})") from None
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank < max(local_world_size, 1):
        raise ConfigError(f"the launcher gave rank {rank} of a world of {world_size}: not a valid place")
    return Ranks(rank, world_size, local_rank, max(local_world_size, 1))


def check_accelerate() -> None:
    """Distributed training goes through fastai's accelerate integration: say so if it is missing."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise ConfigError(
            'a distributed run needs Hugging Face accelerate: pip install "trdcli[distributed]" '
            "(or pip install accelerate)"
        ) from None


def start(ranks: Ranks, device) -> None:
    """Join the process group (NCCL on CUDA, gloo elsewhere), once."""
    import torch.distributed as dist

    if not ranks.distributed or dist.is_initialized():
        return
    check_accelerate()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop(ranks: Ranks) -> None:
    import torch.distributed as dist

    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def from_main(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank (anything picklable)."""
    if not ranks.distributed:
        return value
    import torch.distributed as dist

    box = [value if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def summed(counts: list[int], ranks: Ranks) -> list[int]:
    """Each count summed over the ranks."""
    if not ranks.distributed:
        return list(counts)
    import torch
    import torch.distributed as dist

    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"  # NCCL: GPU tensors only
    tensor = torch.tensor(counts, dtype=torch.int64, device=device)
    dist.all_reduce(tensor)
    return [int(v) for v in tensor.tolist()]


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """Whether ``flag`` is true on any rank: every rank gets the same answer, so all stop together."""
    return bool(summed([int(flag)], ranks)[0]) if ranks.distributed else flag


def on_main(action: Callable[[], Any], ranks: Ranks) -> Any:
    """``action()`` run by rank 0 alone (a file written, images checked once); its result on every rank.

    Every outcome reaches every rank, so none is left waiting in the broadcast for one that stopped:
    a :class:`~trdcli.core.errors.TRDError` is raised on every rank; any other exception (an internal
    bug) keeps its traceback on rank 0 and stops the others with one line naming it.
    """
    if not ranks.distributed:
        return action()
    outcome = None
    if ranks.is_main:
        try:
            outcome = (action(), None)
        except TRDError as exc:
            outcome = (None, exc)
        except BaseException as exc:
            from_main((None, OtherRankFailed(f"rank 0 stopped on an internal error ({type(exc).__name__}: {exc}); "
                                             "its traceback is in rank 0's output")), ranks)  # fmt: skip
            raise
    result, error = from_main(outcome, ranks)
    if error is not None:
        raise error
    return result


def gathered(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not ranks.distributed:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(out, value)
    return out


def average_batchnorm_statistics(model, ranks: Ranks) -> None:
    """Every rank's BatchNorm running mean and variance replaced by their mean over the ranks, as
    timm's ``distribute_bn(reduce=True)`` does: statistics each rank re-estimated on its own shard of
    the same global batches become those of all the images counted. With equal shards the mean is
    exactly one process's over the global batches; the variance leaves out the spread between the
    shards' means, which is small beside it. Other buffers come from rank 0, as DDP keeps them."""
    if not ranks.distributed:
        return
    import torch.distributed as dist

    from trdcli.callbacks.batchnorm import batchnorm_layers

    averaged = set()
    for layer in batchnorm_layers(model):
        for buffer in (layer.running_mean, layer.running_var):
            dist.all_reduce(buffer.data)
            buffer.data /= ranks.world_size
            averaged.add(id(buffer))
    for buffer in model.buffers():
        if id(buffer) not in averaged:
            dist.broadcast(buffer.data, src=0)
