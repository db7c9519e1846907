"""Training on several processes with torchrun (DistributedDataParallel): rank, wrapping, averaging."""

from __future__ import annotations

import os

import torch


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel, joining the process group (NCCL on CUDA, else gloo)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)


def mean_over_ranks(values: dict[str, float], world: int) -> dict[str, float]:
    """Average logged losses over the ranks, so the log shows the loss of the whole global batch."""
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}
