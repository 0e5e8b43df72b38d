"""ONNX export of a model's towers, checked against torch (the ``onnx`` extra).

:func:`export_onnx` (``finetuner export --onnx ARTIFACT``) writes one graph per tower into
``ARTIFACT/onnx/``, in the layout :mod:`finetuner.onnx_runtime` describes and runs. Every graph
is checked against torch on a batch of another shape than the traced one and is kept only
when no value differs by more than 1e-4. ``quantize="int8"`` adds ``<modality>.int8.onnx``:
weights quantised to int8 per channel, activations quantised on the fly (dynamic).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from finetuner._atomic import check_target, write_folder
from finetuner.choices import QUANTIZATIONS
from finetuner.errors import ExportError, UnknownNameError
from finetuner.lora import merge_into
from finetuner.models.embedding import EmbeddingModel
from finetuner.onnx_runtime import INDEX_FILE, ONNX_DIR, OUTPUT, feed, require, session

OPSET = 17
TOLERANCE = 1e-4
# Traced with one batch, checked with another of other sizes: a shape baked into the graph fails the check.
TRACE_TEXTS = ["a short text", "a longer sentence, with punctuation and a few more words in it"]
CHECK_TEXTS = [
    "x",
    "three words here",
    "a third text, longer than anything in the traced batch, so its token axis must be dynamic",
]


class _TowerGraph(nn.Module):
    """``EmbeddingModel.forward`` for one modality, the features as positional inputs (what the exporter traces)."""

    def __init__(self, model: EmbeddingModel, modality: str, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.modality, self.names = model, modality, list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, inputs, strict=True)), self.modality)


def export_onnx(
    model: EmbeddingModel | str | Path,
    output: str | Path | None = None,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export every tower of ``model`` (an artifact directory or an EmbeddingModel) to ONNX.

    Files go to ``output`` (default ``ARTIFACT/onnx``; required for an in-memory model),
    written atomically; an existing ``output`` is replaced only when it is an export or an
    empty folder, or with ``overwrite=True``. Raises :class:`ExportError` when a graph does not
    match torch within 1e-4. Returns the folder.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UnknownNameError("quantize", quantize, QUANTIZATIONS)
    require("onnx", "onnxruntime")
    if isinstance(model, (str, Path)):
        from finetuner.artifacts import load

        target = Path(output) if output is not None else Path(model) / ONNX_DIR
        model = load(model)
    elif output is None:
        raise ValueError("export_onnx() of an in-memory model needs output= (a folder)")
    else:
        target, model = Path(output), copy.deepcopy(model).cpu()  # the caller's model keeps its device and mode
    merge_into(model)  # LoRA adapters folded into this copy's weights: the graph is the plain architecture
    check_target(target, ours=lambda folder: (folder / INDEX_FILE).is_file(), what="an ONNX export", overwrite=overwrite)
    model.eval()
    with write_folder(target) as staging:
        index = {modality: _export_tower(model, modality, staging, quantize) for modality in model.modalities}
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return target


def _samples(modality: str) -> tuple[list[Any], list[Any]]:
    """Items to trace with and items to check with, of different batch and item sizes."""
    if modality == "text":
        return TRACE_TEXTS, CHECK_TEXTS
    from PIL import Image

    rng = np.random.default_rng(0)

    def image(height: int, width: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))

    return [image(64, 48), image(40, 72)], [image(96, 96), image(30, 50), image(128, 64)]


def _dynamic_axes(name: str, tensor: torch.Tensor) -> dict[int, str]:
    """The batch axis of every input; every axis of integer (token) inputs; a 1-D input's length."""
    if tensor.ndim == 1:
        return {0: f"{name}_length"}
    axes = {0: "batch"}
    if not tensor.is_floating_point():
        axes.update({axis: "sequence" if axis == 1 else f"{name}_{axis}" for axis in range(1, tensor.ndim)})
    return axes


def _features(tower: Any, items: list[Any], modality: str) -> dict[str, torch.Tensor]:
    features = tower.preprocess(items)
    wrong = [k for k, v in features.items() if not isinstance(v, torch.Tensor)]
    if wrong:
        raise ExportError(
            f"the {modality} tower's preprocess() returns non-tensor values for {wrong}; ONNX inputs must be tensors"
        )
    return features


def _export_tower(model: EmbeddingModel, modality: str, folder: Path, quantize: str | None) -> dict[str, Any]:
    tower = model.tower(modality)
    trace_items, check_items = _samples(modality)
    trace, check = _features(tower, trace_items, modality), _features(tower, check_items, modality)
    names = list(trace)
    path = folder / f"{modality}.onnx"
    dynamic = {name: _dynamic_axes(name, tensor) for name, tensor in trace.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer hints
        torch.onnx.export(
            _TowerGraph(model, modality, names).eval(),
            tuple(trace[n] for n in names),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes={**dynamic, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
        )
        expected = model(check, modality).numpy()
    actual = session(path).run([OUTPUT], feed(check, names))[0]
    difference = float(np.abs(actual - expected).max())
    if not difference <= TOLERANCE:  # NaN fails too
        raise ExportError(
            f"the ONNX graph of the {modality} tower differs from torch by {difference:.2e} (more than {TOLERANCE:g}) "
            f"on a check batch of other shapes than the traced one; nothing was written"
        )
    entry = {
        "file": path.name,
        "inputs": names,
        "output": OUTPUT,
        "dim": model.output_dim,
        "opset": OPSET,
        "max_abs_diff": difference,
    }
    if quantize == "int8":
        entry["int8"] = _quantize(path, check, names, expected)
    return entry


def _quantize(source: Path, check: dict[str, torch.Tensor], names: list[str], expected: np.ndarray) -> dict[str, Any]:
    """Dynamic int8 quantisation (per-channel weights); reports the lowest cosine to the fp32 output on the check batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = source.with_name(f"{source.stem}.int8.onnx")
    logging.disable(logging.WARNING)  # the quantiser logs advice and per-tensor notes on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    actual = session(target).run([OUTPUT], feed(check, names))[0]
    cosine = np.sum(_unit(actual) * _unit(expected), axis=1)
    return {"file": target.name, "scheme": "dynamic int8, per-channel weights", "min_cosine_to_fp32": float(cosine.min())}


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
