"""Training on several processes with torchrun (DistributedDataParallel): rank, device, wrapping,
averaging, and the stop rule every rank follows."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: torch.device, world: int) -> torch.device:
    """This process's device: under torchrun on CUDA, GPU ``LOCAL_RANK`` modulo the GPU count (ranks
    share GPUs when there are more ranks than GPUs); otherwise ``device`` itself."""
    if world == 1 or device.type != "cuda" or device.index is not None:
        return device
    ours = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    torch.cuda.set_device(ours)
    return ours


def backend_for(device: torch.device) -> str:
    """NCCL when every rank on this host has a GPU of its own; gloo on CPUs and when ranks share a GPU
    (NCCL refuses two ranks on one device, gloo reduces CUDA tensors through host memory)."""
    if device.type == "cuda" and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= torch.cuda.device_count():
        return "nccl"
    return "gloo"


def _join_group(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))


def seen_by_every_rank(value: bool, device: torch.device, world: int) -> bool:
    """``value``, a look at the output dir, once every rank has taken it: under torchrun this joins
    the process group and waits for all ranks, so none looks after rank 0 has begun to write there."""
    if world > 1:
        import torch.distributed as dist

        _join_group(device)
        dist.barrier()
    return value


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel, joining the process group (:func:`backend_for`)."""
    _join_group(device)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def same_as_rank0(modules: Sequence[torch.nn.Module], world: int) -> None:
    """Give every rank rank 0's parameters and buffers of ``modules`` (as DDP does for the model)."""
    if world == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t, 0)


def mean_grads_over_ranks(params: Sequence[torch.nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over the ranks (as DDP does for the model's): for what
    trains beside the model, the discriminators, so every rank keeps the same ones."""
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    import torch.distributed as dist

    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Average logged losses over the ranks, so the log shows the loss of the whole global batch."""
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def rank0_values(values: Sequence[float], world: int, device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank. Each rank's own clock and cancel flag would stop it at a
    step of its own, leaving the others waiting in the next all-reduce; rank 0's decide for all."""
    if world == 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return [float(v) for v in t.tolist()]
