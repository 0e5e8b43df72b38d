"""The unit a plugin builds: one encoder that owns its preprocessing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODALITIES = ("text", "image")


class Tower(nn.Module):
    """Raw items in, ``[N, output_dim]`` embeddings out, in two steps.

    Subclasses set ``modality`` (``"text"`` or ``"image"``) and ``output_dim`` and implement
    :meth:`preprocess` (items -> dict of CPU tensors; no autograd) and :meth:`forward`
    (that dict, moved to the device -> embeddings). CNN towers set ``channels_last = True``
    so the runtime converts them to that memory format, which is faster on CPU.
    """

    modality: str = "text"
    output_dim: int = 0
    channels_last: bool = False

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def item_cost(self, item: Any) -> int:
        """A cheap size estimate used to batch items of similar size together (0: no sorting)."""
        return 0

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(positions in items, preprocessed features)`` for every inference batch of ``items``.

        Items of similar :meth:`item_cost` share a batch, so little padding is computed. A tower
        whose size estimate costs real work (tokenizing) overrides this to do that work once.
        """
        order = sorted(range(len(items)), key=lambda i: -self.item_cost(items[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, self.preprocess([items[i] for i in chunk])

    def save_files(self, directory: Path) -> None:
        """Write what rebuilding this tower offline needs besides its weights (tokenizer, config)."""
