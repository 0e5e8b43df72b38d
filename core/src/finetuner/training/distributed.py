"""torch.distributed under torchrun: rank, world size, device, DDP wrapping. No own process launching."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from finetuner.runtime import resolve_device

logger = logging.getLogger("finetuner")


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> DistributedContext:
        """Join the process group torchrun describes (WORLD_SIZE > 1); a single process otherwise."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 and not torch_dist.is_initialized():
            return cls(0, 1, resolve_device(device))
        target = resolve_device(device)
        if target.type == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            target = torch.device("cuda", local_rank)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
        rank = torch_dist.get_rank()
        if rank == 0:
            logger.info("distributed training on %d processes (%s)", torch_dist.get_world_size(), torch_dist.get_backend())
        return cls(rank, torch_dist.get_world_size(), target)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=False)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()
