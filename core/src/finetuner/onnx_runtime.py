"""Running exported ONNX graphs with onnxruntime (the ``onnx`` extra); :mod:`finetuner.export` writes them.

An export is a folder, ``ARTIFACT/onnx/`` by default: ``<modality>.onnx`` computes what
``EmbeddingModel.forward`` does for that modality (tower, projection, normalisation). Its inputs
are exactly the keys of the tower's ``preprocess`` output, with dynamic batch and token axes;
its output ``embedding`` is ``[N, output_dim]`` float32. ``<modality>.int8.onnx`` is the int8
graph, when there is one. ``towers.json`` lists the files and input names.

``finetuner.encode(artifact, items, backend="onnx")`` (or ``"onnx-int8"``) runs those graphs
through :func:`graphs_forward`; preprocessing, sorting by size and batching are the torch path's own.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finetuner.artifact_schema import inside
from finetuner.errors import ArtifactError, FinetunerError

if TYPE_CHECKING:
    from finetuner.encoding import Forward

ONNX_DIR = "onnx"
INDEX_FILE = "towers.json"
OUTPUT = "embedding"


def require(*modules: str) -> None:
    """Raise a :class:`FinetunerError` naming the ``onnx`` extra when one of ``modules`` is not installed."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise FinetunerError(
                f"ONNX export and the onnx backends need onnx and onnxruntime: pip install 'finetuner-core[onnx]' ({exc})"
            ) from exc


def session(path: Path, device: torch.device | None = None) -> Any:
    """An onnxruntime session for the graph at ``path``: on CUDA when ``device`` is and onnxruntime-gpu is installed."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as torch would (1 per rank under torchrun)
    options.log_severity_level = 3  # errors only: graph-optimiser notes are not the user's concern
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


def feed(features: dict[str, torch.Tensor], names: list[str]) -> dict[str, np.ndarray]:
    """A graph's inputs from a tower's preprocessed features."""
    return {name: features[name].cpu().numpy() for name in names}


def exported_folder(artifact: str | Path, int8: bool) -> Path:
    """``artifact``'s ONNX export; an :class:`ArtifactError` with the command to run when there is none."""
    folder = Path(artifact) / ONNX_DIR
    if not (folder / INDEX_FILE).is_file():
        raise ArtifactError(
            f"{artifact} has no ONNX export ({folder / INDEX_FILE}): run `finetuner export --onnx {artifact}{' --quantize int8' if int8 else ''}`"
        )
    return folder


def graphs_forward(folder: Path, int8: bool, device: torch.device) -> Forward:
    """Sessions for every tower exported in ``folder`` (loaded into memory now) behind the encode loop's forward."""
    require("onnxruntime")
    index = json.loads((folder / INDEX_FILE).read_text())
    sessions = {}
    for modality, entry in index.items():
        if int8 and "int8" not in entry:
            raise ArtifactError(f"{folder} has no int8 graph of the {modality} tower: export again with --quantize int8")
        name = entry["int8"]["file"] if int8 else entry["file"]
        graph = inside(folder, str(name), f"{modality}{'.int8' if int8 else ''}.file", folder / INDEX_FILE)  # never outside
        sessions[modality] = (session(graph, device), entry["inputs"])

    def forward(tower: Any, features: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
        graph, names = sessions[modality]
        return torch.from_numpy(graph.run([OUTPUT], feed(features, names))[0])

    return forward
