"""The two towers of a transformers dual encoder (CLIP, SigLIP, SigLIP 2, ALIGN): each owns its half of the model.

The OpenAI CLIP backbones and every ``hf-clip:`` model are built from these; a :class:`Family`
says how each model type tokenizes, pools and projects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import finetuner
from finetuner.models import Tower
from finetuner_multimodal.augment import ImageAugmentation, tower_augmentation
from finetuner_multimodal.images import describe, to_rgb_tensor

TEXT_FEATURES = ("input_ids", "attention_mask", "token_type_ids")
INTERPOLATIONS = {2: "bilinear", 3: "bicubic"}  # PIL resampling filters, in timm's words


class Family(NamedTuple):
    """How one model type embeds: its projections, text pooling and tokenizing convention."""

    text_projection: str | None  # the model's attribute applied to the pooled text state, if any
    image_projection: str | None
    first_token: bool  # pool the text at its first token (ALIGN) rather than the encoder's pooler output
    padding: str  # "longest", or "max_length" for models trained on fixed-length text
    attention_mask: bool  # False: the text encoder sees no mask, as SigLIP was trained
    max_length: int | None  # the text length convention (None: the model's positions)
    loss: str | None  # the loss that fits the model's training, when not the task's default
    export_formats: tuple[str, ...]  # ("transformers",): the transformers model takes the towers' weights and logits
    logits: dict[str, tuple[int, ...]]  # the transformers model's logit_scale (and SigLIP's logit_bias) by their shapes


SIGLIP_LOGITS = {"logit_scale": (1,), "logit_bias": (1,)}
FAMILIES = {
    "clip": Family(
        "text_projection", "visual_projection", False, "longest", True, None, None, ("transformers",), {"logit_scale": ()}
    ),
    "siglip": Family(None, None, False, "max_length", False, None, "SigLIPLoss", ("transformers",), SIGLIP_LOGITS),
    "siglip2": Family(None, None, False, "max_length", False, None, "SigLIPLoss", ("transformers",), SIGLIP_LOGITS),
    "align": Family("text_projection", None, True, "max_length", True, 64, None, (), {}),  # it learns a temperature instead
}


def check_texts(items: Sequence[Any]) -> None:
    """DataError naming the first item that is not a string."""
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise finetuner.DataError(f"the text tower takes strings; item {index} is {describe(item)}")


def set_layer_checkpointing(tower: Tower, module: nn.Module, enabled: bool) -> None:
    """transformers' checkpointing of every layer of ``module`` (non-reentrant); the Tower's refusal where it has none."""
    layers = [m for m in module.modules() if hasattr(m, "gradient_checkpointing")]
    if not layers:
        Tower.set_gradient_checkpointing(tower, enabled)  # refuses, naming the tower
    for layer in layers:
        layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)
        layer.gradient_checkpointing = enabled


class _DualTower(Tower):
    """What both halves share: the config they save and export with, and the family's loss and formats."""

    def __init__(self, config: Any, output_dim: int, family: Family) -> None:
        super().__init__()
        self.config = config
        self.output_dim = output_dim
        self.family = family
        self.default_loss = family.loss
        self.export_formats = family.export_formats

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """This half of the model's transformers folder: config, tokenizer or image processor, and weights under its names."""
        self.save_files(directory)
        return dict(self.state_dict())


class DualTextTower(_DualTower):
    """Strings -> the dual encoder's text model -> its pooled state (and text projection)."""

    modality = "text"

    def __init__(
        self,
        text_model: nn.Module,
        text_projection: nn.Module | None,
        tokenizer: Any,
        config: Any,
        *,
        output_dim: int,
        max_length: int,
        family: Family,
    ) -> None:
        super().__init__(config, output_dim, family)
        self.text_model = text_model
        self.text_projection = text_projection
        self.tokenizer = tokenizer
        self.max_length = max_length

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        check_texts(items)
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

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        set_layer_checkpointing(self, self.text_model, enabled)

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """As the image tower's, with the model's ``logit_scale`` (and ``logit_bias``) in its shape; finetuner fills in their values."""
        logits = {name: torch.zeros(shape) for name, shape in self.family.logits.items()}
        return {**super().export_files(directory, fmt), **logits}

    def save_files(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.config.save_pretrained(directory)


class DualImageTower(_DualTower):
    """Images (paths, PIL images, arrays, tensors) -> the model's image processor -> vision model (and projection)."""

    modality = "image"

    def __init__(
        self,
        vision_model: nn.Module,
        visual_projection: nn.Module | None,
        processor: Any,
        config: Any,
        *,
        output_dim: int,
        family: Family,
    ) -> None:
        super().__init__(config, output_dim, family)
        self.vision_model = vision_model
        self.visual_projection = visual_projection
        self.processor = processor

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

    def augmentation(self, options: Mapping[str, Any]) -> ImageAugmentation | None:
        """timm's training transform at the processor's size, resampling, mean and std (None for SigLIP 2's NaFlex)."""
        interpolation = INTERPOLATIONS.get(int(getattr(self.processor, "resample", 3) or 3), "bicubic")
        return tower_augmentation(self, interpolation, options)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        set_layer_checkpointing(self, self.vision_model, enabled)

    def save_files(self, directory: Path) -> None:
        self.processor.save_pretrained(directory)
        self.config.save_pretrained(directory)
