"""The frozen-embedding cache: a frozen tower gives fixed outputs, so each training item is embedded once for all epochs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from finetuner.encoding import embed_backbone
from finetuner.models.embedding import EmbeddingModel
from finetuner.training.batches import Side
from finetuner.training.distributed import DistributedContext, shard

logger = logging.getLogger("finetuner")


class FrozenCache:
    """The frozen towers' outputs for every training item, one array per side, in dataset order."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays

    @classmethod
    def build(
        cls,
        model: EmbeddingModel,
        sides: list[Side],
        dist: DistributedContext,
        *,
        batch_size: int,
        precision: str,
        directory: Path | None = None,
    ) -> FrozenCache:
        """Each rank embeds a shard of every side and all share the rows; with ``directory`` they go to
        ``side-<n>.npy`` files there and are read back memory-mapped (the ``cache_frozen="disk"`` mode)."""
        logger.info("backbone frozen: caching its embeddings of the training data (%s)", "disk" if directory else "memory")
        arrays = []
        for number, side in enumerate(sides):
            part = shard(len(side.items), dist.rank, dist.world_size)
            local = embed_backbone(
                model,
                side.items[part.start : part.stop],
                modality=side.modality,
                batch_size=batch_size,
                precision=precision,
                device=dist.device,
            )
            rows = dist.gather_rows(local, to_all=True)
            if directory is not None:
                path = directory / f"side-{number}.npy"
                if dist.local_rank == 0:  # one writer per machine; the rename keeps readers of a shared disk safe
                    directory.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(f"{path.stem}.rank{dist.rank}.tmp.npy")
                    np.save(partial, rows)
                    os.replace(partial, path)
                dist.barrier()
                rows = np.load(path, mmap_mode="r")
            arrays.append(rows)
        return cls(arrays)

    def rows(self, indices: list[int], device: torch.device) -> list[torch.Tensor]:
        """The cached outputs of the items at ``indices``, one tensor per side."""
        at = np.asarray(indices)
        return [torch.from_numpy(array[at]).to(device) for array in self.arrays]
