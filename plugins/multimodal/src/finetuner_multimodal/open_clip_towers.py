"""Build one open_clip model and split it into a text and an image tower.

The image tower keeps ``model.visual``; the text tower keeps the rest without the learned
temperature and bias (the temperature goes to the EmbeddingModel), so every weight the towers
use is held once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.hf_model import HFTextEncoder
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from torch import nn

import finetuner
from finetuner.models import EmbeddingModel, Tower
from finetuner_multimodal.augment import ImageAugmentation, tower_augmentation
from finetuner_multimodal.images import to_pil
from finetuner_multimodal.open_clip_models import OPEN_CLIP_PREFIX, model_config
from finetuner_multimodal.towers import check_texts, set_layer_checkpointing

CONFIG_FILE = "open_clip_config.json"  # open_clip's own format: {"model_cfg": ..., "preprocess_cfg": ...}


def set_open_clip_checkpointing(tower: Tower, module: nn.Module, enabled: bool) -> None:
    """``module.set_grad_checkpointing(enabled)`` (or its flag), refused where nothing in it checkpoints."""
    if hasattr(module, "set_grad_checkpointing"):
        module.set_grad_checkpointing(enabled)
    elif hasattr(module, "grad_checkpointing"):
        module.grad_checkpointing = enabled
    if enabled and not any(getattr(m, "grad_checkpointing", False) for m in module.modules()):
        Tower.set_gradient_checkpointing(tower, enabled)  # refuses, naming the tower


class TextEncoder(nn.Module):
    """An open_clip model without its image tower, temperature and bias: token ids -> text embeddings."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


class OpenClipTextTower(Tower):
    """Strings -> open_clip's tokenizer (padded to its context length) -> text encoder."""

    modality = "text"

    def __init__(
        self, encoder: TextEncoder, tokenizer: Any, config: dict[str, Any], *, output_dim: int, default_loss: str | None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.config = config
        self.output_dim = output_dim
        self.default_loss = default_loss

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        check_texts(items)
        return {"tokens": self.tokenizer(list(items))}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run_encoder(self.encoder, features["tokens"])

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """open_clip's checkpointing of the text transformer's blocks (transformers' for a Hugging Face text model)."""
        model = self.encoder.model
        text = getattr(model, "text", None)  # CustomTextCLIP's text tower; CLIP keeps its transformer at the top
        if isinstance(text, HFTextEncoder):
            set_layer_checkpointing(self, text.transformer, enabled)
        else:
            set_open_clip_checkpointing(self, model.transformer if text is None else text, enabled)

    def save_files(self, directory: Path) -> None:
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))
        if hasattr(self.tokenizer, "save_pretrained"):  # a Hugging Face tokenizer, not open_clip's own BPE
            self.tokenizer.save_pretrained(directory)


class OpenClipImageTower(Tower):
    """Images (paths, PIL images, arrays, tensors) -> open_clip's eval preprocessing -> image encoder."""

    modality = "image"

    def __init__(self, visual: nn.Module, config: dict[str, Any], *, output_dim: int, default_loss: str | None) -> None:
        super().__init__()
        self.visual = visual
        self.config = config
        self.output_dim = output_dim
        self.default_loss = default_loss
        self.transform = image_transform_v2(PreprocessCfg(**config["preprocess_cfg"]), is_train=False)

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        # open_clip's transforms work on PIL images, as in its own pipeline
        return {"pixel_values": torch.stack([self.transform(to_pil(item, index)) for index, item in enumerate(items)])}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run_encoder(self.visual, features["pixel_values"])

    def augmentation(self, options: Mapping[str, Any]) -> ImageAugmentation | None:
        """timm's training transform at the model's input size, interpolation, mean and std."""
        return tower_augmentation(self, self.config["preprocess_cfg"]["interpolation"], options)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """open_clip's ``set_grad_checkpointing`` of the image encoder; refused where it has none (ModifiedResNet)."""
        set_open_clip_checkpointing(self, self.visual, enabled)

    def save_files(self, directory: Path) -> None:
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))


def load_open_clip(architecture: str, tag: str | None, *, pretrained: bool, local_dir: str | Path | None) -> EmbeddingModel:
    """See :func:`finetuner_multimodal.open_clip_models.build_open_clip`."""
    label = OPEN_CLIP_PREFIX + architecture + (f":{tag}" if tag else "")
    saved = _saved_config(local_dir)
    preprocess = saved["preprocess_cfg"] if saved else (open_clip.get_pretrained_cfg(architecture, tag) if tag else {})
    try:
        model = open_clip.create_model(
            architecture,
            pretrained=tag if pretrained else None,
            pretrained_text=False,  # random init never fetches a Hugging Face text model's weights
            force_preprocess_cfg=preprocess,
        )
        hf_tokenizer = saved is not None and model_config(architecture)["text_cfg"].get("hf_tokenizer_name")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{local_dir}" if hf_tokenizer else architecture)
    except (OSError, RuntimeError, ValueError) as exc:  # files missing from the caches, offline
        raise finetuner.ModelNotAvailableError(f"cannot build {label}: {exc}") from exc
    config = {
        "model_cfg": model_config(architecture),
        "preprocess_cfg": merge_preprocess_dict(PreprocessCfg(), open_clip.get_model_preprocess_cfg(model)),
    }
    default_loss = "SigLIPLoss" if config["model_cfg"].get("init_logit_bias") is not None else None
    logit_scale = float(model.logit_scale.detach())
    logit_bias = float(model.logit_bias.detach()) if model.logit_bias is not None else None  # sigmoid-trained ones
    visual = model.visual
    del model.visual, model.logit_scale, model.logit_bias
    dim = int(config["model_cfg"]["embed_dim"])
    text = OpenClipTextTower(TextEncoder(model), tokenizer, config, output_dim=dim, default_loss=default_loss)
    image = OpenClipImageTower(visual, config, output_dim=dim, default_loss=default_loss)
    return EmbeddingModel({"text": text, "image": image}, logit_scale=logit_scale, logit_bias=logit_bias)


def _saved_config(local_dir: str | Path | None) -> dict[str, Any] | None:
    path = Path(local_dir) / CONFIG_FILE if local_dir is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None
