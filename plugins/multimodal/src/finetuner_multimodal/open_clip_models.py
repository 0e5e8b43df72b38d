"""``open_clip/<architecture>[:<pretrained tag>]``: any open_clip model, from the open-clip-torch package.

Light at import (no torch, no open_clip): open_clip is imported when a name is resolved or
built, and its absence is a clear error naming the pip extra. The towers are built by
:mod:`finetuner_multimodal.open_clip_towers`.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import finetuner

if TYPE_CHECKING:
    from finetuner import EmbeddingModel

OPEN_CLIP_PREFIX = "open_clip/"
OPEN_CLIP_DESCRIPTION = "any open_clip/<architecture>[:<pretrained tag>] builds"
EXTRA = "pip install 'finetuner-multimodal[open_clip]'"
CNN_PREFIXES = ("convnext", "resnet", "regnet", "efficientnet")


def import_open_clip() -> ModuleType:
    try:
        import open_clip
    except ImportError as exc:
        raise finetuner.ModelNotAvailableError(
            f"{OPEN_CLIP_PREFIX} models need the open-clip-torch package, which is not installed: {EXTRA}"
        ) from exc
    return open_clip


def parse_name(name: str) -> tuple[str, str | None]:
    """``(architecture, tag or None)`` of ``<architecture>[:<tag>]``; UnknownNameError with close matches for either."""
    open_clip = import_open_clip()
    architecture, _, tag = name.partition(":")
    if model_config(architecture) is None:
        valid = [OPEN_CLIP_PREFIX + a for a in open_clip.list_models() if model_config(a) is not None]
        raise finetuner.UnknownNameError("open_clip architecture", OPEN_CLIP_PREFIX + architecture, valid)
    if tag and not open_clip.is_pretrained_cfg(architecture, tag):
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        raise finetuner.UnknownNameError(
            f"pretrained tag of {OPEN_CLIP_PREFIX}{architecture}",
            tag,
            tags,
            hint=""
            if tags
            else f"It has none: {OPEN_CLIP_PREFIX}{architecture} with pretrained=False builds it with random weights.",
        )
    return architecture, tag or None


def model_config(architecture: str) -> dict[str, Any] | None:
    """open_clip's config of a contrastive architecture (CoCa captioners are not embedding models), or None."""
    config = import_open_clip().get_model_config(architecture)
    return config if config is not None and "multimodal_cfg" not in config else None


def resolve_open_clip(name: str) -> finetuner.BackboneSpec:
    """The spec of ``open_clip/<name>``, its dimension from open_clip's architecture config."""
    architecture, tag = parse_name(name)
    config = model_config(architecture)
    vision = config["vision_cfg"]
    cnn = isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name", "").startswith(CNN_PREFIXES)
    return finetuner.BackboneSpec(
        name=OPEN_CLIP_PREFIX + name,
        task="text-to-image",
        output_dim=int(config["embed_dim"]),
        architecture="CNN" if cnn else "transformer",
        description=f"open_clip {architecture}{f' pretrained as {tag}' if tag else ''}; {OPEN_CLIP_DESCRIPTION}",
        build=partial(build_open_clip, name),
    )


def build_open_clip(name: str, pretrained: bool = True, local_dir: str | Path | None = None) -> EmbeddingModel:
    """``open_clip/<architecture>[:<tag>]`` as a text and an image tower with open_clip's tokenizer and preprocessing.

    ``pretrained=True`` loads the tag's weights from open_clip's cache (the Hugging Face cache
    for hub-hosted tags), downloading them when online; ``pretrained=False`` builds random
    weights, offline for every architecture with open_clip's own tokenizer. Preprocessing is
    the tag's (or what ``local_dir``, a saved artifact's folder, recorded).
    """
    architecture, tag = parse_name(name)
    if pretrained:
        if tag is None:
            tags = import_open_clip().list_pretrained_tags_by_model(architecture)
            raise finetuner.ModelNotAvailableError(
                f"{OPEN_CLIP_PREFIX}{architecture} names no pretrained tag: add one "
                f"({', '.join(f'{OPEN_CLIP_PREFIX}{architecture}:{t}' for t in tags) or 'it has none'}) "
                "or pass pretrained=False for random weights"
            )
        check_cached(architecture, tag)
    from finetuner_multimodal.open_clip_towers import load_open_clip

    return load_open_clip(architecture, tag, pretrained=pretrained, local_dir=local_dir)


def check_cached(architecture: str, tag: str) -> None:
    """Offline, raise when the tag's weights are not in open_clip's cache, naming the cache path and pretrained=False."""
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = import_open_clip().get_pretrained_cfg(architecture, tag)
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (
            [filename, filename.rsplit(".", 1)[0] + ".safetensors"]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names) or not constants.HF_HUB_OFFLINE:
            return
        where = f"{repo} in the Hugging Face cache {constants.HF_HUB_CACHE}, and HF_HUB_OFFLINE is set"
    else:
        path = Path("~/.cache/clip").expanduser() / os.path.basename(cfg.get("url", ""))
        if path.is_file() or not constants.HF_HUB_OFFLINE:
            return
        where = f"{path}, and HF_HUB_OFFLINE is set"
    raise finetuner.ModelNotAvailableError(
        f"the weights of {OPEN_CLIP_PREFIX}{architecture}:{tag} are not in open_clip's cache (no {where}). "
        "Download them once with network access, or pass pretrained=False for random weights."
    )
