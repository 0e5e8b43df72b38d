"""Optimizers by name (any torch.optim class) and the learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from finetuner.errors import TrainingError, UnknownNameError
from finetuner.training.options import SCHEDULERS


def optimizer_names() -> list[str]:
    return [
        n
        for n, c in vars(torch.optim).items()
        if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
    ]


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    *,
    learning_rate: float,
    weight_decay: float,
    lr_scales: Mapping[torch.nn.Parameter, float] | None = None,
    **options: Any,
) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` looked up case-insensitively (AdamW, SGD, Adam, ...).

    Weight decay applies to matrices and filters only: biases, normalisation weights and
    other 1-d parameters (the CLIP temperature among them) are not decayed, as in BERT's
    and sentence-transformers' recipes. ``lr_scales`` multiplies the learning rate of the
    parameters it holds (layer-wise decay); each group records its multiplier as ``lr_scale``,
    and the groups come largest multiplier first.
    """
    by_lower = {n.lower(): n for n in optimizer_names()}
    if name.lower() not in by_lower:
        raise UnknownNameError("optimizer", name, optimizer_names())
    cls = getattr(torch.optim, by_lower[name.lower()])
    params = list(params)
    grouped: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for p in params:
        grouped.setdefault((lr_scales.get(p, 1.0) if lr_scales else 1.0, p.ndim >= 2), []).append(p)
    groups = [
        {"params": group, "weight_decay": weight_decay if decayed else 0.0, "lr": learning_rate * scale, "lr_scale": scale}
        for (scale, decayed), group in sorted(grouped.items(), key=lambda item: (-item[0][0], not item[0][1]))
    ]
    optimizer = cls(groups, lr=learning_rate, **options)
    _trial_step(cls, params[0].device if params else torch.device("cpu"), learning_rate, options)
    return optimizer


def _trial_step(cls: type[torch.optim.Optimizer], device: torch.device, learning_rate: float, options: dict[str, Any]) -> None:
    """One step on a throwaway parameter: some optimizers (LBFGS wants a closure, SparseAdam sparse gradients) and
    options (``amsgrad="x"``, ``fused`` with ``foreach``) fail only when stepping, which should not be mid-training."""
    trial = torch.zeros(2, device=device, requires_grad=True)
    trial.grad = torch.zeros_like(trial)
    try:
        cls([trial], lr=learning_rate, **options).step()
    except (TypeError, ValueError, RuntimeError) as exc:
        given = f" with optimizer_options={options}" if options else ""
        raise TrainingError(f"optimizer {cls.__name__}{given} cannot train a model here: {exc}") from exc


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
