"""CLIP's two towers: each owns its half of the model and its preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from transformers import CLIPConfig, CLIPImageProcessor, PreTrainedTokenizerBase

import finetuner
from finetuner.models import Tower

# PIL modes whose values exceed 255, and the value that means white (float images are taken as [0, 1]).
HIGH_DEPTH_MODES = {"I": 65535.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "F": 1.0}


class ClipTextTower(Tower):
    """Strings -> CLIP text model -> text projection (``CLIPTextModelWithProjection``'s path)."""

    modality = "text"
    export_formats = ("transformers",)

    def __init__(
        self,
        text_model: nn.Module,
        text_projection: nn.Linear,
        tokenizer: PreTrainedTokenizerBase,
        config: CLIPConfig,
        max_length: int,
    ) -> None:
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = max_length
        self.output_dim = text_projection.out_features

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise finetuner.DataError(f"the text tower of CLIP takes strings; item {index} is {_describe(item)}")
        encoded = self.tokenizer(list(items), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.run_encoder(self.text_model, input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        return self.text_projection(output.pooler_output)

    def item_cost(self, item: Any) -> int:
        return len(item) if isinstance(item, str) else 0

    def save_files(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.config.save_pretrained(directory)

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """The text half of a ``CLIPModel`` folder: config, tokenizer, and weights under CLIPModel's names."""
        self.save_files(directory)
        return dict(self.state_dict())


class ClipImageTower(Tower):
    """Images -> CLIP vision model -> visual projection.

    Takes image file paths, PIL images of any mode, ``HWC`` uint8 numpy arrays (``HW`` for
    grey) and ``CHW`` tensors (float in [0, 1] or uint8).
    """

    modality = "image"
    export_formats = ("transformers",)

    def __init__(
        self,
        vision_model: nn.Module,
        visual_projection: nn.Linear,
        processor: CLIPImageProcessor,
        config: CLIPConfig,
    ) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection
        self.processor = processor
        self.config = config
        self.output_dim = visual_projection.out_features

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        images = [to_rgb_tensor(item, index) for index, item in enumerate(items)]
        pixels = self.processor(images=images, do_rescale=False, input_data_format="channels_first", return_tensors="pt")
        return {"pixel_values": pixels["pixel_values"]}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.run_encoder(self.vision_model, pixel_values=features["pixel_values"])
        return self.visual_projection(output.pooler_output)

    def save_files(self, directory: Path) -> None:
        self.processor.save_pretrained(directory)
        self.config.save_pretrained(directory)

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """The image half of a ``CLIPModel`` folder: config, image processor, and weights under CLIPModel's names."""
        self.save_files(directory)
        return dict(self.state_dict())


def to_rgb_tensor(item: Any, index: int) -> torch.Tensor:
    """One image item as a ``3xHxW`` float tensor in [0, 1]; DataError naming the index (and file) otherwise."""
    where = f"the image tower of CLIP: item {index}"
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not _is_file(path):
            raise finetuner.DataError(f"{where} is a string that is not an existing image file: {str(item)[:80]!r}")
        try:
            with Image.open(path) as image:
                return _from_pil(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise finetuner.DataError(f"{where}: cannot read image file {path}: {exc}") from exc
    if isinstance(item, Image.Image):
        return _from_pil(item)
    if isinstance(item, np.ndarray):
        if (
            item.dtype != np.uint8
            or item.ndim not in (2, 3)
            or (item.ndim == 3 and item.shape[2] not in (1, 3, 4))
            or not item.size
        ):
            raise finetuner.DataError(
                f"{where} is a {item.dtype} array of shape {item.shape}; expected uint8 HxWxC (C = 1, 3 or 4) or HxW"
            )
        array = item[:, :, None] if item.ndim == 2 else item
        return _three_channels(torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1))
    if isinstance(item, torch.Tensor):
        if (
            item.ndim != 3
            or item.shape[0] not in (1, 3, 4)
            or not item.numel()
            or not (item.is_floating_point() or item.dtype == torch.uint8)
        ):
            raise finetuner.DataError(
                f"{where} is a {item.dtype} tensor of shape {tuple(item.shape)}; expected CxHxW (C = 1, 3 or 4), float in [0, 1] or uint8"
            )
        tensor = item.detach().cpu()
        if tensor.dtype == torch.uint8:
            return _three_channels(tensor.float() / 255)
        low, high = float(tensor.min()), float(tensor.max())
        if low < 0 or high > 1:
            raise finetuner.DataError(
                f"{where} is a float tensor with values in [{low:.3g}, {high:.3g}]; expected raw pixels in [0, 1]"
            )
        return _three_channels(tensor.float())
    raise finetuner.DataError(f"{where} is {_describe(item)}; expected an image file path, a PIL image, an array or a tensor")


def _from_pil(image: Image.Image) -> torch.Tensor:
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_DEPTH_MODES:  # 16/32-bit grey or float: convert("RGB") would clip to 255
        grey = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()) / HIGH_DEPTH_MODES[image.mode]
        return grey.clamp(0, 1).expand(3, -1, -1)
    if image.mode == "P":
        image = image.convert("RGBA")
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a NUL byte or an over-long name: text, not a path
        return False


def _three_channels(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1)
    return tensor[:3]


def _describe(item: Any) -> str:
    if isinstance(item, str):
        return f"the string {item[:40]!r}"
    if item is None or isinstance(item, (int, float, bool)):
        return repr(item)
    return f"a {type(item).__module__}.{type(item).__qualname__}"
