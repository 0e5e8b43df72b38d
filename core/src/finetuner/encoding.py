"""encode(): raw items to a float32 numpy array of embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.models.embedding import EmbeddingModel
from finetuner.runtime import autocast, compiled, eval_mode, move, prepare, resolve_device, resolve_precision


def encode(
    model: EmbeddingModel | str | Path,
    items: Sequence[Any],
    *,
    batch_size: int = 64,
    modality: str | None = None,
    precision: str = "auto",
    device: str | torch.device = "auto",
    backend: str = "torch",
    compile: bool = False,
) -> np.ndarray:
    """Embed items into an ``[N, output_dim]`` float32 array, in input order.

    ``model`` is an :class:`EmbeddingModel` or an artifact directory. For two-tower models
    ``modality="text"`` or ``"image"`` picks the tower; without it strings go to the text
    tower and everything else (PIL images, arrays, tensors) to the image tower.
    ``backend="onnx"`` (or ``"onnx-int8"``) runs the graphs ``finetuner export --onnx`` wrote
    into the artifact with onnxruntime, in fp32 (an in-memory model is exported first); see
    :mod:`finetuner.export`. ``precision`` is ``"auto"`` (bf16 autocast where the hardware runs
    it fast, else fp32), ``"fp32"`` or ``"bf16"``; the result is float32 either way.
    ``compile=True`` runs the towers through :func:`torch.compile` (the first batches compile).
    """
    if backend != "torch":
        from finetuner.export import onnx_forward

        model, forward = onnx_forward(model, backend, device)
        where = next(model.parameters()).device  # the torch model only preprocesses: leave it where it is
        return _run(model, items, model.output_dim, forward, batch_size, modality, "fp32", where, False)
    if isinstance(model, (str, Path)):
        from finetuner.artifacts import load

        model = load(model)
    return _run(
        model,
        items,
        model.output_dim,
        lambda tower, features, name: model(features, name),
        batch_size,
        modality,
        precision,
        device,
        compile,
    )


def embed_backbone(
    model: EmbeddingModel,
    items: Sequence[Any],
    *,
    modality: str,
    batch_size: int = 64,
    precision: str = "auto",
    device: str | torch.device = "auto",
    compile: bool = False,
) -> np.ndarray:
    """The tower's output before projection and normalisation (what a frozen backbone always gives)."""
    dim = model.tower(modality).output_dim
    return _run(
        model, items, dim, lambda tower, features, name: tower(features), batch_size, modality, precision, device, compile
    )


def _run(
    model: EmbeddingModel,
    items: Sequence[Any],
    dim: int,
    forward: Callable[[Any, dict[str, torch.Tensor], str], torch.Tensor],
    batch_size: int,
    modality: str | None,
    precision: str,
    device: str | torch.device,
    compile: bool,
) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    items = list(items)
    out = np.zeros((len(items), dim), dtype=np.float32)
    if not items:
        return out
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_route(model, item, modality), []).append(index)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    prepare(model, torch_device)
    with eval_mode(model), torch.inference_mode(), compiled(model, compile):
        for name, indices in groups.items():
            tower = model.tower(name)
            for positions, features in tower.batches([items[i] for i in indices], batch_size):
                with autocast(torch_device, dtype):
                    embeddings = forward(tower, move(features, torch_device), name)
                out[[indices[p] for p in positions]] = embeddings.float().cpu().numpy()
    return out


def _route(model: EmbeddingModel, item: Any, modality: str | None) -> str:
    if modality is not None:
        model.tower(modality)
        return modality
    if len(model.towers) == 1:
        return model.modalities[0]
    return "text" if isinstance(item, str) else "image"
