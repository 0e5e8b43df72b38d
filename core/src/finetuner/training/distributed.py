"""torch.distributed under torchrun: rank, world size, device, DDP wrapping, sharded encoding.

Nothing here launches processes: ``torchrun`` starts one per GPU (or several on a CPU
machine) and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``; every rank runs the
same program and :meth:`DistributedContext.setup` joins the group (gloo on CPU, nccl on
CUDA). Object collectives (metrics, embedding rows) go through a gloo group, so large
arrays never pass through GPU memory.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist

from finetuner.runtime import resolve_device

logger = logging.getLogger("finetuner")
T = TypeVar("T")
GATHER_BYTES = 64 * 2**20  # rows sent per rank and round when gathering embeddings


@dataclass
class DistributedContext:
    """Where this process stands in a torchrun launch (rank 0 of 1 without one)."""

    rank: int
    world_size: int
    device: torch.device
    local_rank: int = 0
    _object_group: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str | torch.device = "auto") -> DistributedContext:
        """Join the process group torchrun describes (WORLD_SIZE > 1); a single process otherwise.

        On ranks other than 0 the ``finetuner`` logger is lowered to warnings, so a run logs once.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 and not torch_dist.is_initialized():
            return cls(0, 1, resolve_device(device))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        target = resolve_device(device)
        if target.type == "cuda":
            torch.cuda.set_device(local_rank)
            target = torch.device("cuda", local_rank)
        if not torch_dist.is_initialized():
            # Imported after the group exists, torch._dynamo (timm, torchvision, transformers and
            # compile import it) keeps gloo's threads alive past destroy_process_group, and the
            # process then aborts at exit now and then, after its work is done.
            importlib.import_module("torch._dynamo")
            torch_dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
            atexit.register(_destroy_group)
        rank = torch_dist.get_rank()
        if rank == 0:
            logger.info("distributed run on %d processes (%s)", torch_dist.get_world_size(), torch_dist.get_backend())
        else:
            logger.setLevel(logging.WARNING)
        return cls(rank, torch_dist.get_world_size(), target, local_rank)

    def wrap(self, module: torch.nn.Module, ignore: Sequence[str] = ()) -> torch.nn.Module:
        """``module`` in DistributedDataParallel (itself on one process); ``ignore`` names parameters
        that get no gradient in a step (DDP would otherwise wait for them)."""
        if self.world_size == 1:
            return module
        if ignore:
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=False)

    def no_sync(self, module: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` while ``skip`` (gradient accumulation between optimizer steps)."""
        if skip and isinstance(module, torch.nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (the same on every rank)."""
        if self.world_size == 1:
            return value
        total = value.detach().clone()
        torch_dist.all_reduce(total)
        return total / self.world_size

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if self.world_size == 1:
            return value
        box = [value]
        torch_dist.broadcast_object_list(box, src=0, group=self._objects())
        return box[0]

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's boolean on every rank (one small tensor broadcast)."""
        if self.world_size == 1:
            return flag
        tensor = torch.tensor([int(flag)], device=self.device)
        torch_dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters of ``module`` to every rank."""
        if self.world_size == 1:
            return
        with torch.no_grad():
            for parameter in module.parameters():
                torch_dist.broadcast(parameter.data, src=0)

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """All-reduce (mean) the gradients of parameters DDP does not own, such as a loss's own weights."""
        if self.world_size == 1:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                torch_dist.all_reduce(parameter.grad)
                parameter.grad /= self.world_size

    def gather_rows(self, local: np.ndarray, *, to_all: bool = False) -> np.ndarray | None:
        """Every rank's ``local`` rows concatenated in rank order: on rank 0 (on every rank with
        ``to_all``), None elsewhere. Sent in rounds of about 64 MiB per rank."""
        if self.world_size == 1:
            return local
        group = self._objects()
        counts: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(counts, len(local), group=group)
        receive = to_all or self.is_main
        out = np.empty((sum(counts), *local.shape[1:]), dtype=local.dtype) if receive else None
        starts = np.cumsum([0, *counts])
        row_bytes = local.dtype.itemsize * int(np.prod(local.shape[1:]))  # the same on every rank, even one with no rows
        step = max(1, GATHER_BYTES // max(1, row_bytes))
        for begin in range(0, max(counts), step):
            piece = local[begin : begin + step]
            pieces: list[Any] | None = [None] * self.world_size if receive else None
            if to_all:
                torch_dist.all_gather_object(pieces, piece, group=group)
            else:
                torch_dist.gather_object(piece, pieces, dst=0, group=group)
            if out is not None:
                for rank, rows in enumerate(pieces):
                    out[starts[rank] + begin : starts[rank] + begin + len(rows)] = rows
        return out

    def _objects(self) -> Any:
        """The group for object collectives: the default one under gloo, a gloo group beside nccl."""
        if torch_dist.get_backend() == "gloo":
            return None
        if self._object_group is None:
            self._object_group = torch_dist.new_group(backend="gloo")
        return self._object_group


def _destroy_group() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def shard(count: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous part of ``range(count)``; the first ``count % world_size`` ranks get one more."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def encode_sharded(
    model: Any, items: Sequence[Any], *, all_ranks: bool = False, device: str | torch.device = "auto", **options: Any
) -> np.ndarray | None:
    """:func:`finetuner.encode` spread over the ranks of a torchrun launch.

    Each rank embeds a contiguous shard of ``items`` on its own device; the rows come back in
    input order on rank 0 (on every rank with ``all_ranks=True``) and None elsewhere. In a
    single process this is plain ``encode``. ``options`` go to ``encode`` (batch_size,
    modality, precision, backend); ``model`` is an EmbeddingModel or an artifact directory.
    """
    from finetuner.encoding import encode

    context = DistributedContext.setup(device)
    part = shard(len(items), context.rank, context.world_size)
    local = encode(model, list(items[part.start : part.stop]), device=context.device, **options)
    return context.gather_rows(local, to_all=all_ranks)
