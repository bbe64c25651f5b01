"""The process group for `torchrun` training, and the few collectives the loop needs.

Run the same command under `torchrun --nproc_per_node N`: every rank loads the frozen receiver and
sharer itself (plain modules, no wrapper) and only the fusers are wrapped in DistributedDataParallel
(only they train, and DDP needs one forward per step over all of them). The backend is NCCL on CUDA and gloo on CPU. Without torchrun's environment
(`WORLD_SIZE` unset or 1) everything here is a no-op and the world is one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..loading import has_fast_bf16

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the run.

    Attributes:
        rank: Global rank (0 writes files and shows the progress bar).
        world_size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: Where this rank computes.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (float64 on the wire)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    def wrap(self, fusers: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
        """The fusers wrapped in DDP for several processes, else unchanged.

        Args:
            fusers: The `FuserStack`.
            find_unused_parameters: Let a step leave some fusers unused. `FuserStack` skips a layer
                none of whose cached tokens is fused, which can happen only to a sliding-window
                receiver layer (its cache holds the last W tokens); elsewhere every fuser runs on
                every step (training examples always fuse the tokens just before the answer).
        """
        if not self.distributed:
            return fusers
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            fusers, device_ids=ids, output_device=ids[0] if ids else None, find_unused_parameters=find_unused_parameters
        )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`"auto"` -> `cuda:<local_rank>` when CUDA is available, else cpu; `"cuda"` -> `cuda:<local_rank>`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """`"auto"` -> `"bf16"` where `has_fast_bf16(device)`, else `"fp32"`; other values unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if has_fast_bf16(device) else "fp32"


def init_world(device: str = "auto") -> World:
    """Join torchrun's process group if there is one (idempotent) and pick this rank's device.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N" (N is ignored under torchrun: each rank takes
            cuda:<LOCAL_RANK>).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device.startswith("cuda:"):
        device = "cuda"
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
        logger.info("rank %d of %d joined the %s process group on %s", rank, world_size, backend, resolved)
    return World(rank, world_size, local_rank, resolved)
