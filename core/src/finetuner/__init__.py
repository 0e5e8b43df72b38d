"""finetuner: turn pretrained backbones into embedding models and fine-tune them for search.

Listing (``list_models``, ``describe_models``) reads plugin specs only and imports no
deep-learning library; the rest is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from finetuner.errors import (
    ArtifactError,
    DataError,
    ExportError,
    FinetunerError,
    HubError,
    ModelNotAvailableError,
    OptionError,
    PluginError,
    TrainingError,
    UnknownNameError,
)
from finetuner.hookspecs import hookimpl
from finetuner.registry import TASKS, BackboneSpec, get_spec, list_models
from finetuner.report.backbones import describe_models

if TYPE_CHECKING:  # what _LAZY imports on first use, re-exported (`as`) for type checkers and IDEs
    from finetuner.artifacts import load as load
    from finetuner.artifacts import save as save
    from finetuner.calibration import calibrate as calibrate
    from finetuner.data.load import load_data as load_data
    from finetuner.ecosystem import export_sentence_transformers as export_sentence_transformers
    from finetuner.ecosystem import export_timm as export_timm
    from finetuner.ecosystem import export_transformers as export_transformers
    from finetuner.encoding import encode as encode
    from finetuner.evaluation.evaluate import evaluate as evaluate
    from finetuner.export import export_onnx as export_onnx
    from finetuner.hub import push_to_hub as push_to_hub
    from finetuner.mining import mine_hard_negatives as mine_hard_negatives
    from finetuner.models.build import build_model as build_model
    from finetuner.models.embedding import EmbeddingModel as EmbeddingModel
    from finetuner.models.tower import Tower as Tower
    from finetuner.prompts import set_prompts as set_prompts
    from finetuner.training.fit import fit as fit

__version__ = "0.1.0"

_LAZY = {
    "build_model": "finetuner.models.build",
    "EmbeddingModel": "finetuner.models.embedding",
    "Tower": "finetuner.models.tower",
    "encode": "finetuner.encoding",
    "calibrate": "finetuner.calibration",
    "export_onnx": "finetuner.export",
    "export_sentence_transformers": "finetuner.ecosystem",
    "export_transformers": "finetuner.ecosystem",
    "export_timm": "finetuner.ecosystem",
    "push_to_hub": "finetuner.hub",
    "save": "finetuner.artifacts",
    "load": "finetuner.artifacts",
    "fit": "finetuner.training.fit",
    "evaluate": "finetuner.evaluation.evaluate",
    "load_data": "finetuner.data.load",
    "mine_hard_negatives": "finetuner.mining",
    "set_prompts": "finetuner.prompts",
}

__all__ = [
    "TASKS",
    "ArtifactError",
    "BackboneSpec",
    "DataError",
    "ExportError",
    "FinetunerError",
    "HubError",
    "ModelNotAvailableError",
    "OptionError",
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
