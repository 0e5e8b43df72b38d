"""Pooling of token sequences (text) and feature maps (images) into one vector."""

from __future__ import annotations

import torch
from torch import nn

from finetuner.errors import UnknownNameError

TOKEN_POOLINGS = ("mean", "cls", "max", "last")


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool ``[N, T, D]`` token states into ``[N, D]``, ignoring padded positions.

    ``"cls"`` takes each row's first token whose mask is set and ``"last"`` its last one, so left and right
    padding give the same result.
    """
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":
        return hidden[rows, attention_mask.argmax(dim=1)]  # argmax: the first set position
    if mode == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        return hidden[rows, (attention_mask.to(positions.dtype) * positions).argmax(dim=1)]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    raise UnknownNameError("pooling", mode, TOKEN_POOLINGS)


class TokenPooling(nn.Module):
    """Module form of :func:`pool_tokens`."""

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in TOKEN_POOLINGS:
            raise UnknownNameError("pooling", mode, TOKEN_POOLINGS)
        self.mode = mode

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool_tokens(hidden, attention_mask, self.mode)


class GeM(nn.Module):
    """Generalised-mean pooling of ``[N, C, H, W]`` maps with a learnable exponent p."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.to(x.dtype)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)
