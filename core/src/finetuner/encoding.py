"""encode(): raw items to a float32 numpy array of embeddings, in one process or sharded over torchrun's ranks."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.calibration import compactor
from finetuner.choices import BACKENDS
from finetuner.errors import UnknownNameError
from finetuner.models.embedding import EmbeddingModel
from finetuner.prompts import prefixed, resolve_prompt
from finetuner.runtime import autocast, compiled, eval_mode, move, prepare, resolve_device, resolve_precision

Forward = Callable[[Any, dict[str, torch.Tensor], str], torch.Tensor]  # (tower, features, modality) -> embeddings


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
    truncate_dim: int | None = None,
    quantize: str | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> np.ndarray:
    """Embed items into an ``[N, output_dim]`` float32 array, in input order.

    ``model`` is an :class:`EmbeddingModel`, an artifact directory or a backbone name (built
    with its pretrained weights, see :func:`as_model`). For two-tower models
    ``modality="text"`` or ``"image"`` picks the tower; without it strings go to the text
    tower and everything else (PIL images, arrays, tensors) to the image tower.
    ``backend="onnx"`` (or ``"onnx-int8"``) runs the graphs ``finetuner export --onnx`` wrote
    into the artifact with onnxruntime, in fp32 (an in-memory model is exported first); see
    :mod:`finetuner.onnx_runtime`. ``precision`` is ``"auto"`` (bf16 autocast where the hardware runs
    it fast, else fp32), ``"fp32"`` or ``"bf16"``; the result is float32 either way.
    ``compile=True`` runs the towers through :func:`torch.compile` (the first batches compile).

    ``truncate_dim=64`` keeps the first 64 dimensions, re-normalised (for a model trained with
    ``matryoshka_dims``). ``quantize`` returns codes instead of floats: ``"int8"``/``"uint8"``
    (one byte per dimension; they need the model's ranges, see :func:`finetuner.calibrate`),
    ``"binary"``/``"ubinary"`` (one bit per dimension, 8 to a byte); see :mod:`finetuner.quantize`.

    ``prompt="query: "`` puts that text before each text item; ``prompt_name="query"`` puts the
    model's prompt of that name (an unknown name raises an error listing the model's); with
    neither, the model's default prompt, if it has one (see :mod:`finetuner.prompts`).
    """
    if backend not in BACKENDS:
        raise UnknownNameError("backend", backend, BACKENDS)
    if isinstance(model, (str, Path)) and not _is_artifact_folder(model):
        model = as_model(model)  # a backbone name; an artifact stays a folder, for its ONNX graphs
    if backend != "torch":
        model, forward = _onnx(model, backend == "onnx-int8", resolve_device(device))
        compact = compactor(model, truncate_dim, quantize)
        where = next(model.parameters()).device  # the torch model only preprocesses: leave it where it is
        prefix = resolve_prompt(model, prompt, prompt_name)
        return compact(_run(model, items, model.output_dim, forward, batch_size, modality, "fp32", where, False, prefix))
    model = as_model(model)
    compact = compactor(model, truncate_dim, quantize)
    return compact(
        _run(
            model,
            items,
            model.output_dim,
            lambda tower, features, name: model(features, name),
            batch_size,
            modality,
            precision,
            device,
            compile,
            resolve_prompt(model, prompt, prompt_name),
        )
    )


def encode_sharded(
    model: EmbeddingModel | str | Path,
    items: Sequence[Any],
    *,
    all_ranks: bool = False,
    device: str | torch.device = "auto",
    **options: Any,
) -> np.ndarray | None:
    """:func:`encode` spread over the ranks of a torchrun launch.

    Each rank embeds a contiguous shard of ``items`` on its own device; the rows come back in
    input order on rank 0 (on every rank with ``all_ranks=True``) and None elsewhere. In a
    single process this is plain ``encode``. ``options`` go to ``encode`` (batch_size,
    modality, precision, backend, truncate_dim, quantize, prompt, prompt_name); ``model`` is an EmbeddingModel or an artifact directory.
    """
    from finetuner.training.distributed import DistributedContext, shard

    context = DistributedContext.setup(device)
    part = shard(len(items), context.rank, context.world_size)
    local = encode(model, list(items[part.start : part.stop]), device=context.device, **options)
    return context.gather_rows(local, to_all=all_ranks)


def as_model(model: EmbeddingModel | str | Path) -> EmbeddingModel:
    """An :class:`EmbeddingModel` as it is, an artifact folder loaded, or a backbone name built with pretrained weights.

    Anything else raises an error saying to pass an artifact folder or to build the model first.
    """
    from finetuner.artifacts import CONFIG_FILE, load
    from finetuner.errors import ArtifactError

    if isinstance(model, EmbeddingModel):
        return model
    if _is_artifact_folder(model):
        return load(model)
    hint = (
        "Pass the folder finetuner.save() or fit() wrote, or a model name (`finetuner models` lists them); "
        "for a model with options, build it first: finetuner.encode(finetuner.build_model(NAME, ...), items)"
    )
    if isinstance(model, str):
        from finetuner.models.build import build_model
        from finetuner.plugins import get_manager

        try:
            return build_model(model)
        except UnknownNameError as exc:
            if exc.kind != "model":
                raise
            if not Path(model).exists():
                if model.startswith((".", "/", "~")) or "\\" in model:  # a path, not a name: the names would be noise
                    raise ArtifactError(f"no artifact folder at {model}: the path does not exist. {hint}") from None
                names = get_manager().registry.names()
                raise UnknownNameError("model", exc.name, names, hint=f"{model!r} is no artifact folder either. {hint}") from None
    raise ArtifactError(f"{model} is not a finetuner artifact: {CONFIG_FILE} is missing. {hint}")


def _is_artifact_folder(path: str | Path) -> bool:
    from finetuner._atomic import current
    from finetuner.artifacts import CONFIG_FILE

    return (current(Path(path)) / CONFIG_FILE).is_file()


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


def _onnx(model: EmbeddingModel | str | Path, int8: bool, device: torch.device) -> tuple[EmbeddingModel, Forward]:
    """The model (it preprocesses) and a forward through its ONNX graphs; an in-memory model is exported to a temporary folder."""
    from finetuner.onnx_runtime import ONNX_DIR, exported_folder, graphs_forward

    if isinstance(model, EmbeddingModel):
        from finetuner.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="finetuner-onnx-") as folder:
            exported = export_onnx(model, Path(folder) / ONNX_DIR, quantize="int8" if int8 else None)
            return model, graphs_forward(exported, int8, device)
    from finetuner.artifacts import load

    folder = exported_folder(model, int8)
    return load(model), graphs_forward(folder, int8, device)


def _run(
    model: EmbeddingModel,
    items: Sequence[Any],
    dim: int,
    forward: Forward,
    batch_size: int,
    modality: str | None,
    precision: str,
    device: str | torch.device,
    compile: bool,
    prompt: str = "",
) -> np.ndarray:
    """Embeddings of ``items`` by ``forward``, in input order; ``prompt`` goes before each text the text tower gets."""
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
            inputs = [items[i] for i in indices]
            for positions, features in tower.batches(prefixed(inputs, prompt) if name == "text" else inputs, batch_size):
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
