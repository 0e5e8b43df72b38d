"""Image inputs and their preprocessing: any supported item in, a normalised ``[N, 3, H, W]`` batch out.

The resize, crop and normalisation are the weights' own (torchvision ``weights.transforms()``,
timm's data config). They are kept as a JSON-able dict, written next to a saved model as
``image_preprocessing.json`` so the artifact can be used without finetuner.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import pil_to_tensor

from finetuner import ArtifactError, DataError

CONFIG_FILE = "image_preprocessing.json"
SUPPORTED = (
    "an image file path, a PIL image, a numpy HWC or HW uint8 array, "
    "or a CHW (or HW) tensor with 1 or 3 channels, uint8 or float in [0, 1]"
)
# Grey modes deeper than 8 bits, and the value that is white in each: convert("RGB") would clip them at 255.
DEEP_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255, 255)


def load_image(item: Any, index: int) -> Image.Image | torch.Tensor:
    """One input item as an RGB PIL image or a 3-channel float CHW tensor in [0, 1].

    Every PIL mode is read at its own depth: 16- and 32-bit integer grey (``I;16``, ``I``) spans
    0 to 65535 and float grey (``F``) 0 to 1, as float tensors do; transparent pixels (``RGBA``,
    ``LA``, ``PA``, ``P`` with transparency) are composited over white; ``1``, ``L``, ``P``,
    ``CMYK``, ``YCbCr`` convert to RGB. Values outside those ranges, NaN, and an empty (0x0)
    image raise :class:`DataError` naming the item.
    """
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as opened:
                image = ImageOps.exif_transpose(opened)
                image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"item {index}: cannot read image file {str(item)!r}: {exc}") from exc
        return to_rgb(image, index, item)
    if isinstance(item, Image.Image):
        return to_rgb(item, index, item)
    if isinstance(item, np.ndarray):
        return to_rgb(_array_to_image(item, index), index, item)
    if isinstance(item, torch.Tensor):
        return _tensor_to_chw(item, index)
    raise DataError(f"item {index}: cannot embed a {type(item).__name__} as an image; give {SUPPORTED}")


def to_rgb(image: Image.Image, index: int, item: Any) -> Image.Image | torch.Tensor:
    """``image`` (input ``index``, given as ``item``) as RGB: a PIL image, or a float CHW tensor for deeper modes (see :func:`load_image`)."""
    described = f"file {str(item)!r}" if isinstance(item, (str, Path)) else "the image"
    if 0 in image.size:
        raise DataError(f"item {index}: {described} is empty ({image.width}x{image.height} pixels)")
    if image.mode == "RGB":
        return image
    if image.mode in DEEP_MODES:
        white = DEEP_MODES[image.mode]
        grey = torch.from_numpy(np.asarray(image).astype(np.float32)) / white
        return _in_unit_range(grey, index, f"{described} (mode {image.mode!r}, white = {white})").expand(3, -1, -1)
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        return Image.alpha_composite(Image.new("RGBA", image.size, WHITE), image.convert("RGBA")).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise DataError(
            f"item {index}: {described} has image mode {image.mode!r}, which cannot be converted to RGB: {exc}"
        ) from exc


def _array_to_image(array: np.ndarray, index: int) -> Image.Image:
    if array.dtype != np.uint8:
        raise DataError(
            f"item {index}: numpy images must be uint8 (HWC or HW), got dtype {array.dtype}; give floats as a CHW tensor"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise DataError(f"item {index}: numpy images must be HW or HWC with 1, 3 or 4 channels, got shape {array.shape}")
    if 0 in array.shape[:2]:
        raise DataError(f"item {index}: the numpy image is empty (shape {array.shape})")
    return Image.fromarray(np.ascontiguousarray(array))


def _tensor_to_chw(tensor: torch.Tensor, index: int) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise DataError(f"item {index}: image tensors must be CHW with 1 or 3 channels (or HW), got shape {tuple(tensor.shape)}")
    if 0 in tensor.shape[1:]:
        raise DataError(f"item {index}: the image tensor is empty (shape {tuple(tensor.shape)})")
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255
    elif not tensor.is_floating_point():
        raise DataError(f"item {index}: image tensors must be float in [0, 1] or uint8, got {tensor.dtype}")
    return _in_unit_range(tensor.float(), index, "the float image tensor").expand(3, -1, -1)


def _in_unit_range(pixels: torch.Tensor, index: int, what: str) -> torch.Tensor:
    """``pixels`` when every value is in [0, 1]; DataError naming the item otherwise (NaN included)."""
    low, high = (float(v) for v in torch.aminmax(pixels))  # one pass; NaN anywhere makes both NaN
    if math.isnan(low) or math.isnan(high):
        raise DataError(f"item {index}: {what} has NaN pixels")
    if low < 0 or high > 1:
        raise DataError(
            f"item {index}: {what} has values in [{low:.4g}, {high:.4g}], outside [0, 1]; "
            "scale it to [0, 1] (divide 8-bit values by 255), or give a uint8 image"
        )
    return pixels


class ImagePreprocessing:
    """The weights' eval transform, built from a JSON-able config (``library`` = torchvision or timm).

    Resize and crop run per image (PIL ops for PIL images); the conversion to float and the
    normalisation run once on the stacked batch, which gives the same numbers as the
    library's per-image transform.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.geometric = _geometric_transform(config)
        self.mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(config["std"], dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_torchvision(cls, weights: Any) -> ImagePreprocessing:
        """From a torchvision weights enum member (its ``transforms()`` preset)."""
        preset = weights.transforms()
        return cls(
            {
                "library": "torchvision",
                "weights": f"{type(weights).__name__}.{weights.name}",
                "resize_size": int(preset.resize_size[0]),
                "crop_size": int(preset.crop_size[0]),
                "interpolation": preset.interpolation.value,
                "mean": list(preset.mean),
                "std": list(preset.std),
            }
        )

    @classmethod
    def from_timm(cls, model: torch.nn.Module) -> ImagePreprocessing:
        """From a timm model's pretrained config (``timm.data.resolve_data_config``)."""
        from timm.data import resolve_data_config

        data = resolve_data_config(model=model)
        return cls({"library": "timm", **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}})

    def with_size(self, size: int) -> ImagePreprocessing:
        """The same preprocessing, resizing the shorter side to ``size`` and centre-cropping ``size`` x ``size``."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image_size must be a positive int, got {size!r}")
        if self.config["library"] == "torchvision":
            return ImagePreprocessing({**self.config, "resize_size": size, "crop_size": size})
        return ImagePreprocessing({**self.config, "input_size": [3, size, size], "crop_pct": 1.0})

    @classmethod
    def load(cls, directory: str | Path) -> ImagePreprocessing:
        path = Path(directory) / CONFIG_FILE
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read the image preprocessing config {path}: {exc}") from exc
        config.pop("steps", None)
        return cls(config)

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps({**self.config, "steps": describe(self.config)}, indent=2) + "\n")

    def __call__(self, items: Sequence[Any]) -> torch.Tensor:
        """Load, convert, resize, crop and normalise every item; sizes may differ between items."""
        if not items:
            raise DataError("no images to preprocess")
        pixels = []
        with torch.no_grad():
            for index, item in enumerate(items):
                image = load_image(item, index)
                try:
                    image = self.geometric(image)
                except Exception as exc:  # e.g. an empty image
                    raise DataError(f"item {index}: cannot resize {_describe_item(item)}: {exc}") from exc
                pixels.append(pil_to_tensor(image) if isinstance(image, Image.Image) else image)
            if any(p.is_floating_point() for p in pixels):
                pixels = [p if p.is_floating_point() else p / 255 for p in pixels]
                batch = torch.stack(pixels)
            else:
                batch = torch.stack(pixels).float().div_(255)
            return batch.sub_(self.mean).div_(self.std)


def _geometric_transform(config: dict[str, Any]) -> Callable[[Any], Any]:
    """The resize and crop of the library's eval transform (PIL image or CHW tensor in, same kind out)."""
    library = config.get("library")
    if library == "torchvision":
        from torchvision.transforms import InterpolationMode

        return functools.partial(
            _resize_crop,
            resize=config["resize_size"],
            crop=config["crop_size"],
            interpolation=InterpolationMode(config["interpolation"]),
        )
    if library == "timm":
        from timm.data import create_transform
        from timm.data.transforms import MaybeToTensor, ToTensor
        from torchvision.transforms import Compose, Normalize

        options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "library"}
        steps = create_transform(**options, is_training=False).transforms
        return Compose([t for t in steps if not isinstance(t, (MaybeToTensor, ToTensor, Normalize))])
    raise ArtifactError(f"unknown image preprocessing library {library!r} (expected 'torchvision' or 'timm')")


def _resize_crop(image: Any, *, resize: int, crop: int, interpolation: Any) -> Any:
    """torchvision's ``ImageClassification`` geometry: shorter side to ``resize``, centre crop ``crop``."""
    from torchvision.transforms import functional as F

    return F.center_crop(F.resize(image, [resize], interpolation=interpolation, antialias=True), [crop])


def describe(config: dict[str, Any]) -> str:
    """The preprocessing in words, for people reading the JSON without finetuner."""
    mean, std = config["mean"], config["std"]
    if config["library"] == "torchvision":
        size = config["crop_size"]
        resize = f"resize the shorter side to {config['resize_size']} ({config['interpolation']}, antialiased); centre-crop {size}x{size}"
    else:
        height, width = config["input_size"][1:]
        crop_pct = config.get("crop_pct") or 0.875
        scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
        if config.get("crop_mode") == "squash":
            resize = f"resize to {scale[0]}x{scale[1]} ({config['interpolation']}); centre-crop {height}x{width}"
        elif config.get("crop_mode") == "border":
            resize = f"resize the longer side to {max(scale)} ({config['interpolation']}); pad and centre-crop {height}x{width}"
        else:
            resize = f"resize the shorter side to {min(scale)} ({config['interpolation']}); centre-crop {height}x{width}"
    return f"RGB; {resize}; scale to [0, 1]; normalise (x - mean) / std with mean {mean} and std {std}; CHW float32"


def _describe_item(item: Any) -> str:
    return f"file {str(item)!r}" if isinstance(item, (str, Path)) else type(item).__name__
