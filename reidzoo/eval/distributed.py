"""The one ``torchrun`` helper: this process's rank and the world size, and gathering sharded embeddings.

Used by the leaderboard's sharded extraction and by the trainer (which also needs the local rank for its device), so
that there is one place that reads torchrun's environment and initialises the process group.
"""
from __future__ import annotations

import datetime
import os
from typing import NamedTuple, Optional, Union

import torch
import torch.distributed as dist

__all__ = ['DistInfo', 'init_distributed', 'gather_shards']

# rank 0 may evaluate a large test set while the others wait at a barrier: allow long collectives
_TIMEOUT = datetime.timedelta(hours=2)


class DistInfo(NamedTuple):
    """Where this process sits in a ``torchrun`` job (``0, 1, 0`` when not launched by torchrun)."""
    rank: int
    world_size: int
    local_rank: int


def init_distributed(device: Union[str, torch.device, None] = None) -> DistInfo:
    """Rank, world size and local rank from torchrun's environment; initialises the process group once.

    Args:
        device: the device this process computes on; CUDA selects the local GPU (before NCCL starts) and the NCCL
            backend, anything else gloo. Default: CUDA if available.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistInfo(0, 1, 0)
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    device = torch.device(device) if device is not None else torch.device(
        'cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(local_rank if device.index is None else device.index)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo', timeout=_TIMEOUT)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def gather_shards(shard: torch.Tensor, total: int, world_size: int) -> torch.Tensor:
    """Reassemble ``(total, D)`` rows from every rank's ``rows[rank::world_size]`` shard (a collective call)."""
    if world_size <= 1:
        return shard
    parts: list[Optional[torch.Tensor]] = [None] * world_size
    dist.all_gather_object(parts, shard.cpu())
    dim = next(p.shape[1] for p in parts if p is not None and p.dim() == 2 and len(p))
    full = torch.empty(total, dim)
    for r, part in enumerate(parts):
        if len(part):
            full[r::world_size] = part
    return full
