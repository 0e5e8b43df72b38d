"""The builders of the registered CLIP models.

This module stays light (no transformers) so that a model missing from an offline cache
fails at once; :mod:`finetuner_multimodal.loading` does the building.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import constants, try_to_load_from_cache

import finetuner
from finetuner_multimodal.plugin import CLIP_MODELS

if TYPE_CHECKING:
    from finetuner import EmbeddingModel

# What each part is read from: any one group of files will do.
FILES = {
    "config": (("config.json",),),
    "weights": (("model.safetensors",), ("pytorch_model.bin",)),
    "tokenizer": (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "image processor": (("preprocessor_config.json",),),
}


def build_clip_vit_base_patch32(
    pretrained: bool = True, local_dir: str | None = None, max_length: int | None = None
) -> EmbeddingModel:
    """``openai/clip-vit-base-patch32``: ViT-B/32 image encoder, 512-d embeddings."""
    return build_clip("openai/clip-vit-base-patch32", pretrained=pretrained, local_dir=local_dir, max_length=max_length)


def build_clip_vit_base_patch16(
    pretrained: bool = True, local_dir: str | None = None, max_length: int | None = None
) -> EmbeddingModel:
    """``openai/clip-vit-base-patch16``: ViT-B/16 image encoder, 512-d embeddings."""
    return build_clip("openai/clip-vit-base-patch16", pretrained=pretrained, local_dir=local_dir, max_length=max_length)


def build_clip_vit_large_patch14(
    pretrained: bool = True, local_dir: str | None = None, max_length: int | None = None
) -> EmbeddingModel:
    """``openai/clip-vit-large-patch14``: ViT-L/14 image encoder, 768-d embeddings."""
    return build_clip("openai/clip-vit-large-patch14", pretrained=pretrained, local_dir=local_dir, max_length=max_length)


def build_clip(
    name: str, *, pretrained: bool = True, local_dir: str | Path | None = None, max_length: int | None = None
) -> EmbeddingModel:
    """CLIP ``name`` as an EmbeddingModel with a text and an image tower, from the hub (or its cache) or ``local_dir``.

    ``pretrained=True`` loads the weights (from ``local_dir`` when given, a ``save_pretrained``
    folder); ``pretrained=False`` builds the architecture with random weights and never touches
    the network: from ``local_dir`` (what the towers' ``save_files`` wrote), else from cached
    files, else from the known hyperparameters. ``max_length`` caps the text tokens (default
    and maximum: the model's 77).
    """
    if pretrained and not local_dir and constants.HF_HUB_OFFLINE and not has_files("weights", name):
        raise not_available(name, name, "no weights in the cache")
    from finetuner_multimodal.loading import load_clip

    return load_clip(name, pretrained=pretrained, local_dir=local_dir, max_length=max_length)


def has_files(part: str, source: str) -> bool:
    """Whether the files of ``part`` (see FILES) are in the folder ``source`` or, for a hub id, in the cache."""
    if Path(source).is_dir():
        return any(all((Path(source) / f).is_file() for f in group) for group in FILES[part])
    return any(all(isinstance(try_to_load_from_cache(source, f), str) for f in group) for group in FILES[part])


def not_available(name: str, source: str, reason: str) -> finetuner.ModelNotAvailableError:
    """The error for pretrained weights that cannot be had, with the ways out."""
    if source != name:
        return finetuner.ModelNotAvailableError(
            f"no pretrained weights of {name} in {source} ({reason}). Use a folder written by CLIPModel.save_pretrained(), "
            "or pass pretrained=False to build the architecture with random weights from the files there."
        )
    others = [n for n in CLIP_MODELS if n != name and has_files("weights", n)]
    return finetuner.ModelNotAvailableError(
        f"{name} is not available offline: it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
        f"{' and HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else ''} ({reason}). Alternatives: "
        + (f"the cached CLIP models {', '.join(others)}; " if others else "")
        + "download it once with network access (it is then cached); pass local_dir= a folder saved with "
        "CLIPModel.save_pretrained(); pretrained=False for random weights; or finetuner.load() a saved artifact."
    )
