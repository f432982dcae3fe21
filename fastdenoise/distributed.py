"""Scale-out on torchrun (PyTorch's own launcher): sharded folder runs and DistributedDataParallel training.

``torchrun --nproc_per_node=N -m fastdenoise denoise DIR -o OUT`` gives every rank the files ``i`` with
``i % world == rank`` of the sorted listing (each output is written by exactly one rank, atomically, so a
re-run after a kill skips what exists and finishes only what is missing); rank 0 prints the summary.
``torchrun ... -m fastdenoise train`` wraps the step of the network being trained in
:class:`~torch.nn.parallel.DistributedDataParallel`: each rank draws its own crops (rank-distinct crop
seeds), DDP averages the gradients, rank 0 writes the checkpoints, every rank resumes from them.

Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) nothing here does anything.
"""
from __future__ import annotations

import os

import torch

__all__ = ["all_sum", "barrier", "ddp", "finish", "init", "rank_seed", "shard", "world"]


def world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without it)."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str = "auto") -> tuple[int, int, str]:
    """Join the process group when launched by torchrun with more than one process (gloo on the CPU, NCCL
    on GPUs, each rank on GPU ``LOCAL_RANK``). Returns ``(rank, world_size, device)``; ``device`` is the one
    this rank should use ("cuda:LOCAL_RANK" on GPUs)."""
    _, size, local = world()
    if size <= 1:
        return 0, 1, device
    dist = torch.distributed
    gpu = device != "cpu" and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(local % torch.cuda.device_count())
        device = f"cuda:{local % torch.cuda.device_count()}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def active() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard(items: list, rank: int, size: int) -> list:
    """This rank's share of ``items``: every ``size``-th, starting at ``rank`` (a fixed, listing-order split)."""
    return list(items)[rank::size]


def rank_seed(seed: int, rank: int) -> int:
    """Crop seed of ``rank``: ``seed`` itself on rank 0 (a one-process run is unchanged), a mixed seed on the
    others (distinct per rank, never another rank's plain seed)."""
    from fastdenoise.engine import iter_seed

    return int(seed) if rank == 0 else iter_seed(int(seed) + 104729, rank)


def all_sum(values: list[int]) -> list[int]:
    """Element-wise sum of ``values`` over the ranks (the values themselves when not distributed)."""
    if not active():
        return [int(v) for v in values]
    t = torch.tensor([int(v) for v in values], dtype=torch.int64)
    torch.distributed.all_reduce(t)
    return [int(v) for v in t.tolist()]


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def finish() -> None:
    """Leave the process group (if joined), after a barrier: a rank that tears gloo down while a peer is
    still writing its checkpoint or finishing a collective can abort the peer (``terminate called without an
    active exception``)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _Step(torch.nn.Module):
    """One training step as a module over the trained network, so that one DDP forward covers every pass
    the step makes (P2N's three, Nb2Nb's two ...): autograd sums the passes' gradients before DDP's
    all-reduce hooks fire, once per parameter."""

    def __init__(self, model: torch.nn.Module, trainer):
        super().__init__()
        self.model = model
        self._trainer = [trainer]          # a list: not registered as a submodule
        self.est = None

    def forward(self, step, batch, t: int, total: int, seed: int) -> torch.Tensor:
        loss, self.est = step(self._trainer[0].run, batch, t, total, seed)
        return loss


def ddp(trainer) -> None:
    """Train ``trainer``'s networks with DistributedDataParallel (a no-op without a process group): the
    engine calls the method's step through a DDP module per network, which averages the gradients over the
    ranks (DDP also broadcasts rank 0's initial weights and buffers)."""
    if not active():
        return
    from torch.nn.parallel import DistributedDataParallel

    wrapped: dict = {}
    dev = trainer.device

    def wrap(stage, step):
        mod = wrapped.get(stage.part)
        if mod is None:
            inner = _Step(trainer.parts[stage.part].model, trainer)
            ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
            mod = wrapped[stage.part] = DistributedDataParallel(inner, device_ids=ids)

        def run_step(run, batch, t, total, seed):
            loss = mod(step, batch, t, total, seed)
            return loss, mod.module.est

        return run_step

    trainer.wrap_step = wrap
