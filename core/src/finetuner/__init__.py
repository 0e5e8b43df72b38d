"""finetuner: turn pretrained backbones into embedding models and fine-tune them for search.

Listing (``list_models``, ``describe_models``) reads plugin specs only and imports no
deep-learning library; the rest is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from finetuner.errors import (
    ArtifactError,
    DataError,
    FinetunerError,
    ModelNotAvailableError,
    PluginError,
    TrainingError,
    UnknownNameError,
)
from finetuner.hookspecs import hookimpl
from finetuner.registry import TASKS, BackboneSpec, get_spec, list_models
from finetuner.table import describe_models

__version__ = "0.1.0"

_LAZY = {
    "build_model": "finetuner.models.build",
    "EmbeddingModel": "finetuner.models.embedding",
    "Tower": "finetuner.models.tower",
    "encode": "finetuner.encoding",
    "export_onnx": "finetuner.export",
    "save": "finetuner.artifacts",
    "load": "finetuner.artifacts",
    "fit": "finetuner.training.fit",
    "evaluate": "finetuner.evaluation.evaluate",
    "load_data": "finetuner.data.load",
}

__all__ = [
    "TASKS",
    "ArtifactError",
    "BackboneSpec",
    "DataError",
    "FinetunerError",
    "ModelNotAvailableError",
    "PluginError",
    "TrainingError",
    "UnknownNameError",
    "describe_models",
    "get_spec",
    "hookimpl",
    "list_models",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'finetuner' has no attribute {name!r}")
