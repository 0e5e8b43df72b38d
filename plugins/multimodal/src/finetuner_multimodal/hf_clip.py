"""``hf-clip:<model id or folder>``: any transformers CLIP, SigLIP, SigLIP 2 or ALIGN dual encoder.

This module stays light (no torch, no transformers at import): a model missing offline fails
before transformers is imported. :mod:`finetuner_multimodal.hf_dual` builds the towers.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import constants, try_to_load_from_cache

import finetuner

if TYPE_CHECKING:
    from finetuner import EmbeddingModel

HF_CLIP_PREFIX = "hf-clip:"
HF_CLIP_DESCRIPTION = "any hf-clip:<model id or folder> builds"
MODEL_TYPES = ("align", "clip", "siglip", "siglip2")


def resolve_hf_clip(source: str, local_dir: str | None) -> finetuner.BackboneSpec:
    """The spec of ``hf-clip:<source>``, its dimension read from the config (``local_dir``'s first, when loading an artifact)."""
    if not source:
        raise finetuner.UnknownNameError("model", HF_CLIP_PREFIX, [HF_CLIP_PREFIX + "<model id or folder>"])
    folder = config_folder(local_dir) if local_dir is not None else None
    folder = folder or config_folder(source, download=True)
    if folder is None:
        raise not_available(source, "no config.json")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    check_model_type(config.model_type, source)
    return finetuner.BackboneSpec(
        name=HF_CLIP_PREFIX + source,
        task="text-to-image",
        output_dim=embedding_dim(config, source),
        architecture="transformer",
        description=f"Hugging Face {config.model_type} dual encoder; {HF_CLIP_DESCRIPTION}",
        build=partial(build_hf_clip, source),
    )


def build_hf_clip(
    source: str, pretrained: bool = True, local_dir: str | Path | None = None, max_length: int | None = None
) -> EmbeddingModel:
    """A dual encoder from a hub id or a ``save_pretrained`` folder, as a text and an image tower.

    Preprocessing follows the model's files: its tokenizer (SigLIP's padded to ``max_length``
    without an attention mask, as it was trained; CLIP's to the longest text) and its image
    processor config (size, resize, mean and std). ``pretrained=False`` gives random weights, the files still read;
    ``local_dir`` (what the towers' ``save_files`` wrote) replaces ``source`` as the place of
    every file. ``max_length`` caps the text tokens (default: the model's convention).
    """
    files = str(local_dir) if local_dir is not None else source
    if config_folder(files) is None and (constants.HF_HUB_OFFLINE or local_dir is not None):
        raise not_available(files, "no config.json")  # at once, before importing transformers
    from finetuner_multimodal.hf_dual import load_dual

    return load_dual(
        source, files, pretrained=pretrained, local_files_only=not pretrained or local_dir is not None, max_length=max_length
    )


def config_folder(source: str | Path, download: bool = False) -> Path | None:
    """The folder holding ``config.json`` of a local folder or a cached hub model (downloaded if ``download`` and online)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path if (path / "config.json").is_file() else None
    try:
        cached = try_to_load_from_cache(str(source), "config.json")
    except ValueError:  # neither a folder nor a valid repo id
        return None
    if isinstance(cached, str):
        return Path(cached).parent
    if not download or constants.HF_HUB_OFFLINE:
        return None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(source), "config.json")).parent
    except Exception:  # not on the hub, or the hub cannot be reached
        return None


def check_model_type(model_type: str, source: str) -> None:
    if model_type not in MODEL_TYPES:
        raise finetuner.UnknownNameError(
            "hf-clip model type",
            model_type,
            MODEL_TYPES,
            hint=f"({source} is not a dual encoder hf-clip: builds; hf:<model> builds text encoders)",
        )


def embedding_dim(config: Any, source: str) -> int:
    """The size of the shared embedding space: CLIP's and ALIGN's projection, SigLIP's text head (the image width)."""
    if config.model_type in ("clip", "align"):
        return int(config.projection_dim)
    text, image = config.text_config.projection_size, config.vision_config.hidden_size
    if text != image:
        raise finetuner.PluginError(f"{source} embeds texts in {text} dimensions and images in {image}: not one space")
    return int(text)


def not_available(source: str, reason: str) -> finetuner.ModelNotAvailableError:
    path = Path(source).expanduser()
    if path.is_dir():
        detail = f"{reason} in the folder {source}"
    elif path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1:
        detail = f"there is no folder {source}"
    else:
        offline = " with HF_HUB_OFFLINE set" if constants.HF_HUB_OFFLINE else ""
        detail = f"{reason} in the Hugging Face cache ({constants.HF_HUB_CACHE}){offline}"
    return finetuner.ModelNotAvailableError(
        f"{HF_CLIP_PREFIX}{source} is not available offline: {detail}. Give a folder written by the "
        "model's and its processor's save_pretrained() as hf-clip:/path/to/folder, or download it once with network "
        "access so it is cached; pretrained=False builds random weights from the config, tokenizer and processor files."
    )
