"""Load a transformers dual encoder (CLIP, SigLIP, SigLIP 2, ALIGN) and split it into a text and an image tower.

The text tower keeps ``text_model`` (and ``text_projection`` where the family has one), the
image tower ``vision_model`` (and ``visual_projection``); the learned temperature (and SigLIP's bias)
go to the EmbeddingModel, so every weight the towers use is held once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

from finetuner.models import SIGLIP_INITIAL_LOGIT_BIAS, SIGLIP_INITIAL_LOGIT_SCALE, EmbeddingModel
from finetuner_multimodal.hf_clip import check_model_type, embedding_dim, not_available
from finetuner_multimodal.towers import FAMILIES, DualImageTower, DualTextTower


def load_dual(source: str, files: str, *, pretrained: bool, local_files_only: bool, max_length: int | None) -> EmbeddingModel:
    """See :func:`finetuner_multimodal.hf_clip.build_hf_clip`; ``files`` is where the files are read from."""
    config = _load(AutoConfig, files, local_files_only, "config.json")
    check_model_type(config.model_type, source)
    family = FAMILIES[config.model_type]
    if pretrained:
        try:
            model = AutoModel.from_pretrained(files, config=config, dtype=torch.float32, local_files_only=local_files_only)
        except OSError as exc:
            raise not_available(files, f"no weights ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})") from exc
    else:
        model = AutoModel.from_config(config)
        if family.loss == "SigLIPLoss":  # transformers zeroes them (a placeholder for loaded weights)
            with torch.no_grad():  # SigLIP trains from scratch at these
                model.logit_scale.fill_(SIGLIP_INITIAL_LOGIT_SCALE)
                model.logit_bias.fill_(SIGLIP_INITIAL_LOGIT_BIAS)
    if family.first_token:
        model.text_model.pooler = None  # its output is unused, and under DDP every weight must get a gradient
    tokenizer = _load(AutoTokenizer, files, local_files_only, "tokenizer files")
    processor = _load(AutoImageProcessor, files, local_files_only, "preprocessor_config.json")
    return embedding_model(model, tokenizer, processor, name=source, max_length=max_length)


def embedding_model(model: nn.Module, tokenizer: Any, processor: Any, *, name: str, max_length: int | None) -> EmbeddingModel:
    """A dual encoder ``model`` of one of the FAMILIES as an EmbeddingModel: a text and an image tower holding its weights.

    ``max_length`` caps the text tokens (default: the family's convention, else the model's positions).
    """
    config = model.config
    family = FAMILIES[config.model_type]
    limit = config.text_config.max_position_embeddings
    max_length = max_length or family.max_length or limit
    if not 3 <= max_length <= limit:
        raise ValueError(f"max_length must be between 3 and {limit} (the text positions of {name}), got {max_length}")
    dim = embedding_dim(config, name)
    projections = [getattr(model, attr) if attr else None for attr in (family.text_projection, family.image_projection)]
    text = DualTextTower(
        model.text_model, projections[0], tokenizer, config, output_dim=dim, max_length=max_length, family=family
    )
    image = DualImageTower(model.vision_model, projections[1], processor, config, output_dim=dim, family=family)
    bias = getattr(model, "logit_bias", None)  # SigLIP's learned bias
    return EmbeddingModel(
        {"text": text, "image": image},
        logit_scale=_logit_scale(model),
        logit_bias=float(bias.detach().reshape(())) if bias is not None else None,
    )


def _load(cls: Any, files: str, local_files_only: bool, what: str) -> Any:
    try:
        return cls.from_pretrained(files, local_files_only=local_files_only)
    except OSError as exc:
        raise not_available(files, f"no {what}") from exc
    except ValueError as exc:
        raise not_available(files, f"unreadable {what} ({exc})") from exc


def _logit_scale(model: nn.Module) -> float:
    """The model's learned log inverse temperature (ALIGN learns the temperature itself)."""
    if hasattr(model, "logit_scale"):
        return float(model.logit_scale.detach().reshape(()))
    return -float(torch.log(model.temperature.detach()))
