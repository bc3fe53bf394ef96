"""Distributed data parallel under ``torchrun``: NCCL on GPUs, gloo on CPUs; rank 0 logs and checkpoints."""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

_owned = False


def init_from_env(device: Optional[str]) -> Tuple[int, int]:
    """Join the process group described by torchrun's environment; returns (rank, world size)."""
    global _owned
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not torch_dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(local_rank())
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        _owned = True
    return torch_dist.get_rank(), torch_dist.get_world_size()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (already on ``device``)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sampler(dataset: Dataset, train: bool, seed: int, epoch: int) -> DistributedSampler:
    """This rank's share of ``dataset``; the order depends only on (seed, epoch), not on the world size."""
    s = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=False)
    s.set_epoch(epoch)
    return s


def mean(value: float, device: torch.device) -> float:
    """Average of a Python float over ranks (identity when not distributed)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return float(t.item()) / torch_dist.get_world_size()


def average_norm_statistics(model: nn.Module) -> None:
    """Average every batch-norm layer's running mean and variance over the ranks, in place (timm's ``--dist-bn
    reduce``): each rank updated them on its own batches, and evaluation and the saved model use them."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    world = torch_dist.get_world_size()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            for stat in (module.running_mean, module.running_var):
                if stat is not None:
                    torch_dist.all_reduce(stat)
                    stat.div_(world)


def shutdown() -> None:
    """Leave the process group if this module created it."""
    global _owned
    if _owned and torch_dist.is_initialized():
        torch_dist.barrier()  # no rank tears its connections down while another is still communicating
        torch_dist.destroy_process_group()
        _owned = False
