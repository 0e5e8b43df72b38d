"""A text tower written from scratch: each text is the mean of its character trigrams' vectors."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import finetuner
from finetuner.models import Tower
from finetuner_trigram.plugin import DIM


class TrigramTower(Tower):
    """Strings in, ``[N, DIM]`` out: trigrams are hashed into ``buckets`` learned vectors, averaged per text."""

    modality = "text"

    def __init__(self, buckets: int) -> None:
        super().__init__()
        self.output_dim = DIM
        self.bag = nn.EmbeddingBag(buckets, DIM, mode="mean")

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """All texts' trigram ids in one row, and where each text starts: what ``nn.EmbeddingBag`` takes."""
        ids: list[int] = []
        offsets: list[int] = []
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise finetuner.DataError(f"char-trigrams: item {index} is {type(text).__name__}, not a string")
            padded = f"  {text.lower()} "
            offsets.append(len(ids))
            ids.extend(zlib.crc32(padded[i : i + 3].encode()) % self.bag.num_embeddings for i in range(len(padded) - 2))
        return {"ids": torch.tensor(ids, dtype=torch.long), "offsets": torch.tensor(offsets, dtype=torch.long)}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run_encoder(self.bag, features["ids"], features["offsets"])

    def item_cost(self, item: Any) -> int:
        return len(item) if isinstance(item, str) else 0


def build(pretrained: bool = True, local_dir: str | None = None, buckets: int = 4096) -> TrigramTower:
    """The ``char-trigrams`` tower with random vectors: there are no pretrained weights to load.

    ``local_dir`` is unused: the tower writes no files, and ``buckets``, its one option, is
    recorded in saved models and passed back when they are loaded.
    """
    return TrigramTower(buckets)
