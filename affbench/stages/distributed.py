"""Process groups for data-parallel training: torchrun's environment in, rank/world/device out.

``torchrun --nproc_per_node N -m affbench train|finetune|extract CONFIG`` sets RANK, WORLD_SIZE and LOCAL_RANK;
with a world larger than one the stages join a process group (nccl on GPU, gloo on CPU): stage 1 and stage 3
wrap their model in DistributedDataParallel, stage 2 shares the videos out (``share_out``), and rank 0 writes
what is shared (``main_first``). Without those variables everything runs in one process and every helper here is a
no-op, so the single-process path has no distributed code in it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (once); a plain single process when WORLD_SIZE is unset or 1.

    `device` is the request (see affbench.devices): the GPU of this local rank unless it says otherwise.
    """
    from affbench.devices import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_min(value: int, device: torch.device) -> int:
    """The smallest `value` over all ranks: used for the number of steps every rank takes, so none waits forever."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of a list of floats over all ranks (float64)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks: rank 0 fills a shared cache entry (frame shards,
    features) and the others find it complete instead of writing it concurrently. A no-op in one process."""
    main = rank() == 0
    if not main:
        barrier()
    yield
    if main:
        barrier()


def world_size() -> int:
    """Processes in the active group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if is_distributed() else 0


def share_out(items: list[Any], weight: Any) -> list[Any]:
    """This rank's part of `items` (the same list on every rank): disjoint parts covering `items`, balanced by
    `weight(item)` (largest first, each to the least loaded rank). All of `items` in one process."""
    world = world_size()
    if world == 1:
        return list(items)
    loads = [0.0] * world
    mine = []
    for index in sorted(range(len(items)), key=lambda i: (-weight(items[i]), i)):
        target = min(range(world), key=lambda r: (loads[r], r))
        loads[target] += weight(items[index])
        if target == rank():
            mine.append(items[index])
    return mine


def gather_batch(pred: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch on every rank: every rank's predictions (gradients flow back to their rank), labels and
    validity, in rank order; the inputs themselves in one process.

    A loss of batch statistics (1 - CCC) is then the one-process loss of the global batch. Every rank computes
    the same loss; autograd's all_gather sums the ranks' gradients of a rank's rows back onto it (``world``
    times its share) and DDP's average divides by ``world`` again: the step is the one-process step.
    """
    if not is_distributed():
        return pred, labels, valid
    from torch.distributed.nn.functional import all_gather as all_gather_with_grad

    sizes = [int(n) for n in all_gather_objects(int(pred.shape[0]))]
    most = max(sizes)

    def padded(t: torch.Tensor) -> torch.Tensor:  # all_gather needs one shape on every rank
        return torch.cat([t, t.new_zeros((most - t.shape[0], *t.shape[1:]))]) if t.shape[0] < most else t

    def plain_gather(t: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(t) for _ in sizes]
        dist.all_gather(out, t.contiguous())
        return out

    preds = all_gather_with_grad(padded(pred))
    labels_all = plain_gather(padded(labels))
    valid_all = plain_gather(padded(valid.to(torch.uint8)))
    return (torch.cat([p[:n] for p, n in zip(preds, sizes, strict=True)]),
            torch.cat([t[:n] for t, n in zip(labels_all, sizes, strict=True)]),
            torch.cat([v[:n] for v, n in zip(valid_all, sizes, strict=True)]).bool())


def all_ranks_have(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds on every rank (e.g. every rank still has a batch: none waits on a step alone)."""
    return all_reduce_min(int(bool(flag)), device) == 1


def cleanup(*, wait_for_all: bool = True) -> None:
    """Leave the process group, if this process joined one; with `wait_for_all`, once every rank is ready to
    leave: a rank that tears down its gloo connections while another still uses them can abort the other process.
    A rank leaving on an error does not wait (its peers may never arrive)."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (e.g. BatchNorm running statistics) to every rank before evaluating.

    DDP syncs buffers at the start of each training forward, so after the last step each rank holds the
    statistics its own batch produced; evaluation must use one model on every rank.
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)
