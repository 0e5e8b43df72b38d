"""torch.distributed under torchrun: rank, world size, device, DDP wrapping, gathering rows.

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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist

from finetuner.errors import TrainingError
from finetuner.models.embedding import EmbeddingModel
from finetuner.models.tower import Tower
from finetuner.runtime import resolve_device

logger = logging.getLogger("finetuner")
T = TypeVar("T")
GATHER_BYTES = 64 * 2**20  # rows sent per rank and round when gathering embeddings
# how DistributedDataParallel names the parameters that got no gradient in the last step (by their place in its list)
UNUSED_INDICES = re.compile(r"Parameter indices which did not receive grad for rank (\d+): ([\d ]+)")


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
        """``module`` in DistributedDataParallel (itself without a process group; a group of one
        process wraps too, so one GPU runs the path many do); ``ignore`` names parameters that
        get no gradient in a step (DDP would otherwise wait for them).

        Every other trainable parameter must get a gradient in each step. A tower that leaves some
        without one on purpose (a branch taken in some steps only) sets ``leaves_parameters_unused
        = True``, and DDP then looks for unused parameters after each backward, for this model
        only (it costs a walk of the graph per step). A parameter left without a gradient
        otherwise stops training with a :class:`TrainingError` naming it and its tower.
        """
        if not torch_dist.is_initialized():
            return module
        if ignore:
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
        declared = [name for name, tower in _towers(module).items() if getattr(tower, "leaves_parameters_unused", False)]
        if declared:
            logger.info("%s leave parameters unused: DDP looks for them after each backward", ", ".join(declared))
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return _DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=bool(declared))

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


class _DistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    """DDP whose failure over parameters left without a gradient names them and their towers (DDP gives indices)."""

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        try:
            return super().forward(*inputs, **kwargs)
        except RuntimeError as exc:
            found = UNUSED_INDICES.search(str(exc))
            if found is None:
                raise
            raise unused_parameters_error(self, int(found.group(1)), [int(i) for i in found.group(2).split()]) from exc


def unused_parameters_error(ddp: torch.nn.parallel.DistributedDataParallel, rank: int, indices: list[int]) -> TrainingError:
    """The error for the parameters at ``indices`` of ``ddp``'s list, which got no gradient on ``rank``."""
    names = reduced_parameter_names(ddp)
    towers = _towers(ddp.module)
    backbones = {
        modality: source["name"]
        for model in ddp.module.modules()
        if isinstance(model, EmbeddingModel)
        for source in model.sources
        for modality in source.get("modalities", [])
    }
    groups: dict[str, list[str]] = {}
    for name in (names[i] for i in indices if i < len(names)):
        owner = next((path for path in towers if name.startswith(path + ".")), None)
        if owner is None:
            groups.setdefault("outside the towers", []).append(name)
            continue
        tower = towers[owner]
        backbone = f" of {backbones[tower.modality]!r}" if tower.modality in backbones else ""
        groups.setdefault(f"the {tower.modality} tower{backbone} ({type(tower).__name__}, {owner})", []).append(
            name[len(owner) + 1 :]
        )
    listed = "; ".join(f"{where}: {', '.join(params)}" for where, params in groups.items())
    return TrainingError(
        f"DistributedDataParallel needs a gradient for every trainable parameter in each step, and on rank {rank} "
        f"these got none: {listed}. Freeze them (requires_grad_(False)) or take them out of the tower; a tower that "
        "uses them in some steps only sets leaves_parameters_unused = True (on its class, or on the built model's "
        "tower before passing the model to fit()), and DDP then looks for unused parameters in each step."
    )


def reduced_parameter_names(ddp: torch.nn.parallel.DistributedDataParallel) -> list[str]:
    """The names of the parameters ``ddp`` reduces, in its order (``_build_params_for_reducer``'s)."""
    names: list[str] = []
    seen: set[torch.nn.Parameter] = set()
    for module_name, module in ddp.module.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            qualified = f"{module_name}.{name}"  # DDP's spelling, "." first at the top
            if parameter.requires_grad and qualified not in ddp.parameters_to_ignore and parameter not in seen:
                seen.add(parameter)
                names.append(qualified.lstrip("."))
    return names


def _towers(module: torch.nn.Module) -> dict[str, Tower]:
    return {name: tower for name, tower in module.named_modules() if isinstance(tower, Tower)}


def _destroy_group() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def shard(count: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous part of ``range(count)``; the first ``count % world_size`` ranks get one more."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
