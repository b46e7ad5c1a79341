"""Training on several processes (``torchrun``): data-parallel, the same global batch as one
process.

The trainer calls ``setup()``. Launched by torchrun (``WORLD_SIZE`` > 1 in the environment; so
does ``accelerate launch --multi_gpu``, which runs torchrun, not tested here: on a CPU
``accelerate launch --cpu --num_processes 2`` started a world of one) it joins the process group (gloo on CPU, NCCL on GPUs, one GPU per local rank);
otherwise it is a world of one and nothing below communicates. Every rank draws the same batches
(the same seeded generator) and takes every ``world``-th sentence of each; its loss is weighted
by its share of the batch's loss units (span cells, or tokens for the tagger), and the gradients
are summed over ranks, so each update is the one-process update of the whole batch up to float
summation order. That is what DistributedDataParallel computes, written out: it works the same
with frozen parameters, extension channels a shard never touches, and shards left empty by a
short last batch. Only rank 0 scores dev and test and writes the run folder; the others receive
its dev scores, so all take the same selection and early-stopping decisions, and its metrics.
Dropout masks are drawn per rank, so with dropout > 0 a world of two is the same recipe, not the
same numbers, as a world of one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Each local rank its own GPU; CPU ranks share the CPU."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def sum(self, values: list[float]) -> list[float]:
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def sum_gradients(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients over ranks, in one flat buffer (a missing gradient counts as 0)."""
        if self.size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p))
            offset += n

    def share(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def shard(self, batch: list[int]) -> list[int]:
        return batch[self.rank::self.size]


def joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def leave(synchronise: bool = False) -> None:
    """Destroy the process group. A process that exits with it alive leaves gloo's worker
    threads to the interpreter's teardown, which aborts it now and then (SIGABRT, 'terminate
    called without an active exception'; seen in CI). ``synchronise`` (the success path only:
    a failed peer would never arrive) waits for every rank first, so that no rank tears down
    its connections while another still has a collective or its final writes in flight, the
    other way that abort was seen (one rank destroying while rank 0 still saved)."""
    if joined():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def setup(device: torch.device) -> World:
    """The process group the launcher set up in the environment, joined if not yet; a world of
    one without a launcher."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 and not joined():
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
