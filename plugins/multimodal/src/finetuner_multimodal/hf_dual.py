"""Load a transformers dual encoder (CLIP, SigLIP, SigLIP 2, ALIGN) and split it into a text and an image tower.

The text tower keeps ``text_model`` (and ``text_projection`` where the family has one), the
image tower ``vision_model`` (and ``visual_projection``); the learned temperature goes to the
EmbeddingModel, so every weight the towers use is held once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, PretrainedConfig

import finetuner
from finetuner.models import EmbeddingModel, Tower
from finetuner_multimodal.hf_clip import check_model_type, embedding_dim, not_available
from finetuner_multimodal.towers import to_rgb_tensor


class Family(NamedTuple):
    """How one model type embeds: its projections, text pooling and tokenizing convention."""

    text_projection: str | None  # the model's attribute applied to the pooled text state, if any
    image_projection: str | None
    first_token: bool  # pool the text at its first token (ALIGN) rather than the encoder's pooler output
    padding: str  # "longest", or "max_length" for models trained on fixed-length text
    attention_mask: bool  # False: the text encoder sees no mask, as SigLIP was trained
    max_length: int | None  # the text length convention (None: the model's positions)
    loss: str | None  # the loss that fits the model's training, when not the task's default


FAMILIES = {
    "clip": Family("text_projection", "visual_projection", False, "longest", True, None, None),
    "siglip": Family(None, None, False, "max_length", False, None, "SigLIPLoss"),
    "siglip2": Family(None, None, False, "max_length", False, None, "SigLIPLoss"),
    "align": Family("text_projection", None, True, "max_length", True, 64, None),
}
TEXT_FEATURES = ("input_ids", "attention_mask", "token_type_ids")


class DualTextTower(Tower):
    """Strings -> the dual encoder's text model -> its pooled state (and text projection)."""

    modality = "text"

    def __init__(
        self,
        text_model: nn.Module,
        text_projection: nn.Module | None,
        tokenizer: Any,
        config: PretrainedConfig,
        *,
        output_dim: int,
        max_length: int,
        family: Family,
    ) -> None:
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.tokenizer = tokenizer
        self.config = config
        self.output_dim = output_dim
        self.max_length = max_length
        self.family = family
        self.default_loss = family.loss

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise finetuner.DataError(f"the text tower takes strings; item {index} is a {type(item).__name__}")
        encoded = self.tokenizer(
            list(items), padding=self.family.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        keys = TEXT_FEATURES if self.family.attention_mask else ("input_ids",)
        return {key: encoded[key] for key in keys if key in encoded}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.run_encoder(self.text_model, **features)
        pooled = output.last_hidden_state[:, 0] if self.family.first_token else output.pooler_output
        return pooled if self.text_projection is None else self.text_projection(pooled)

    def item_cost(self, item: Any) -> int:
        return len(item) if isinstance(item, str) and self.family.padding == "longest" else 0

    def save_files(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.config.save_pretrained(directory)


class DualImageTower(Tower):
    """Images (paths, PIL images, arrays, tensors) -> the model's image processor -> vision model (and projection)."""

    modality = "image"

    def __init__(
        self,
        vision_model: nn.Module,
        visual_projection: nn.Module | None,
        processor: Any,
        config: PretrainedConfig,
        *,
        output_dim: int,
        family: Family,
    ) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection
        self.processor = processor
        self.config = config
        self.output_dim = output_dim
        self.default_loss = family.loss

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        images = [to_rgb_tensor(item, index) for index, item in enumerate(items)]
        # pixels are in [0, 1]: apply the processor's own rescaling (ALIGN's maps to [-1, 1]) to them
        scale = 255 * self.processor.rescale_factor if self.processor.do_rescale else 1.0
        offset = -1.0 if self.processor.do_rescale and getattr(self.processor, "rescale_offset", False) else 0.0
        if (scale, offset) != (1.0, 0.0):
            images = [image * scale + offset for image in images]
        pixels = self.processor(images=images, do_rescale=False, input_data_format="channels_first", return_tensors="pt")
        return dict(pixels)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.run_encoder(self.vision_model, **features).pooler_output
        return pooled if self.visual_projection is None else self.visual_projection(pooled)

    def save_files(self, directory: Path) -> None:
        self.processor.save_pretrained(directory)
        self.config.save_pretrained(directory)


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
    if family.first_token:
        model.text_model.pooler = None  # its output is unused, and under DDP every weight must get a gradient
    tokenizer = _load(AutoTokenizer, files, local_files_only, "tokenizer files")
    processor = _load(AutoImageProcessor, files, local_files_only, "preprocessor_config.json")
    limit = config.text_config.max_position_embeddings
    max_length = max_length or family.max_length or limit
    if not 3 <= max_length <= limit:
        raise ValueError(f"max_length must be between 3 and {limit} (the text positions of {source}), got {max_length}")
    dim = embedding_dim(config, source)
    projections = [getattr(model, name) if name else None for name in (family.text_projection, family.image_projection)]
    text = DualTextTower(
        model.text_model, projections[0], tokenizer, config, output_dim=dim, max_length=max_length, family=family
    )
    image = DualImageTower(model.vision_model, projections[1], processor, config, output_dim=dim, family=family)
    return EmbeddingModel({"text": text, "image": image}, logit_scale=_logit_scale(model))


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
