"""Load or build one ``CLIPModel`` and split it into finetuner's two towers.

The text tower keeps ``text_model`` + ``text_projection``, the image tower ``vision_model`` +
``visual_projection``, and the learned logit scale goes to the EmbeddingModel, so every weight
is held once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

import finetuner
from finetuner.models import EmbeddingModel
from finetuner_multimodal.clip import has_files, not_available
from finetuner_multimodal.hf_dual import embedding_model
from finetuner_multimodal.plugin import CLIP_MODELS

# The true hyperparameters of the registered models, for pretrained=False without a cached config.json:
# text (hidden, intermediate, layers, heads), vision (hidden, intermediate, layers, heads, patch), projection dim.
ARCHITECTURES = {
    "openai/clip-vit-base-patch32": ((512, 2048, 12, 8), (768, 3072, 12, 12, 32), 512),
    "openai/clip-vit-base-patch16": ((512, 2048, 12, 8), (768, 3072, 12, 12, 16), 512),
    "openai/clip-vit-large-patch14": ((768, 3072, 12, 12), (1024, 4096, 24, 16, 14), 768),
}
IMAGE_SIZE = 224
PARTS = {CLIPConfig: "config", CLIPTokenizer: "tokenizer", CLIPImageProcessor: "image processor"}
TOKENIZER_HINT = "tokenizer.json, or vocab.json and merges.txt"


def load_clip(name: str, *, pretrained: bool, local_dir: str | Path | None, max_length: int | None) -> EmbeddingModel:
    """See :func:`finetuner_multimodal.clip.build_clip`."""
    source = str(local_dir) if local_dir else name
    clip, tokenizer = _pretrained(name, source) if pretrained else _random(name, local_dir)
    image_size = clip.config.vision_config.image_size
    processor = _load(CLIPImageProcessor, source, local_files_only=not pretrained) or _default_processor(image_size)
    model = embedding_model(clip, tokenizer, processor, name=name, max_length=max_length)
    if pretrained and not local_dir:
        for tower in model.towers.values():
            tower.base_model = name
    return model


def _pretrained(name: str, source: str) -> tuple[CLIPModel, CLIPTokenizer]:
    config = _load(CLIPConfig, source, local_files_only=False)
    if config is None:
        raise not_available(name, source, "no config.json")
    try:
        clip = CLIPModel.from_pretrained(source, config=config, dtype=torch.float32)
    except OSError as exc:
        raise not_available(name, source, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from exc
    tokenizer = _load(CLIPTokenizer, source, local_files_only=False)
    if tokenizer is None:
        raise finetuner.ModelNotAvailableError(
            f"the weights of {name} were found in {source} but not its tokenizer files ({TOKENIZER_HINT})"
        )
    return clip, tokenizer


def _random(name: str, local_dir: str | Path | None) -> tuple[CLIPModel, CLIPTokenizer]:
    """Random weights, files read offline: from ``local_dir``, else the hub cache, else the known hyperparameters."""
    if local_dir:
        tokenizer = _load(CLIPTokenizer, str(local_dir))
        config = _load(CLIPConfig, str(local_dir))
        if tokenizer is None or config is None:
            missing = "config.json" if config is None else TOKENIZER_HINT
            raise finetuner.ModelNotAvailableError(f"cannot rebuild {name} from {local_dir}: {missing} is missing there")
        return CLIPModel(config), tokenizer
    # OpenAI's CLIP models share one tokenizer, so any cached one will do.
    tokenizer = next(filter(None, (_load(CLIPTokenizer, n) for n in dict.fromkeys((name, *CLIP_MODELS)))), None)
    if tokenizer is None:
        raise finetuner.ModelNotAvailableError(
            f"cannot build {name} with pretrained=False offline: no CLIP tokenizer files ({TOKENIZER_HINT}) are in the "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}) and a tokenizer cannot be made up. Cache one of "
            f"{', '.join(CLIP_MODELS)} (they share one tokenizer) with network access, or pass local_dir= a folder "
            "that the model's save_files() wrote (as in a saved artifact)."
        )
    config = _load(CLIPConfig, name) or _known_config(name, tokenizer)
    return CLIPModel(config), tokenizer


def _load(cls: Any, source: str, *, local_files_only: bool = True) -> Any:
    """``cls.from_pretrained(source)``, or None when its files are not there.

    Checked by file, since transformers may return defaults instead of failing (a config from an
    empty folder, a 2-token placeholder tokenizer).
    """
    try:
        loaded = cls.from_pretrained(source, local_files_only=local_files_only)
    except OSError:
        return None
    return loaded if has_files(PARTS[cls], source) else None


def _known_config(name: str, tokenizer: CLIPTokenizer) -> CLIPConfig:
    if name not in ARCHITECTURES:
        raise finetuner.ModelNotAvailableError(
            f"no config.json of {name} in the Hugging Face cache, and its architecture is not known offline"
        )
    (t_hidden, t_inter, t_layers, t_heads), (v_hidden, v_inter, v_layers, v_heads, patch), projection_dim = ARCHITECTURES[name]
    # The text model pools at the end-of-text token, so its id comes from the tokenizer in hand.
    text = {
        "hidden_size": t_hidden,
        "intermediate_size": t_inter,
        "num_hidden_layers": t_layers,
        "num_attention_heads": t_heads,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": v_hidden,
        "intermediate_size": v_inter,
        "num_hidden_layers": v_layers,
        "num_attention_heads": v_heads,
        "patch_size": patch,
        "image_size": IMAGE_SIZE,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def _default_processor(image_size: int) -> CLIPImageProcessor:
    """CLIP's preprocessing (bicubic resize of the short side, centre crop, CLIP mean and std)."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
