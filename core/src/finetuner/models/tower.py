"""The unit a plugin builds: one encoder that owns its preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
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

    def save_files(self, directory: Path) -> None:
        """Write what rebuilding this tower offline needs besides its weights (tokenizer, config)."""
