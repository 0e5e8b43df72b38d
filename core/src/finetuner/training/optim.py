"""Optimizers by name (any torch.optim class) and the learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from finetuner.errors import UnknownNameError

SCHEDULERS = ("linear", "cosine", "constant")


def optimizer_names() -> list[str]:
    return [
        n
        for n, c in vars(torch.optim).items()
        if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
    ]


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, learning_rate: float, weight_decay: float, **options: Any
) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` looked up case-insensitively (AdamW, SGD, Adam, ...).

    Weight decay applies to matrices and filters only: biases, normalisation weights and
    other 1-d parameters (the CLIP temperature among them) are not decayed, as in BERT's
    and sentence-transformers' recipes.
    """
    by_lower = {n.lower(): n for n in optimizer_names()}
    if name.lower() not in by_lower:
        raise UnknownNameError("optimizer", name, optimizer_names())
    cls = getattr(torch.optim, by_lower[name.lower()])
    params = list(params)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return cls([g for g in groups if g["params"]], lr=learning_rate, **options)


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then linear decay to 0 (``linear``), cosine decay (``cosine``) or a flat rate (``constant``)."""
    if name not in SCHEDULERS:
        raise UnknownNameError("scheduler", name, SCHEDULERS)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if name == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(progress, 1.0)
        return 1.0 - progress if name == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
