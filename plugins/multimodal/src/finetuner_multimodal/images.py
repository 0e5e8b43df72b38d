"""Image items as float RGB tensors: the one converter of every image tower of the plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

import finetuner

# PIL modes whose values exceed 255, and the value that means white (float images are taken as [0, 1]).
HIGH_DEPTH_MODES = {"I": 65535.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "F": 1.0}
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255, 255)


def to_rgb_tensor(item: Any, index: int) -> torch.Tensor:
    """One image item as a ``3xHxW`` float tensor in [0, 1]; DataError naming the index (and file) otherwise.

    Takes image file paths, PIL images of any mode, ``HWC`` uint8 numpy arrays (``HW`` for
    grey) and ``CHW`` tensors (float in [0, 1] or uint8). Transparent pixels (an alpha channel,
    or a palette with transparency) are composited over white, as the vision plugin does.
    """
    where = f"the image tower: item {index}"
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
    raise finetuner.DataError(f"{where} is {describe(item)}; expected an image file path, a PIL image, an array or a tensor")


def to_pil(item: Any, index: int) -> Image.Image:
    """One image item as an 8-bit RGB PIL image (what PIL-based transforms take), read as :func:`to_rgb_tensor` reads it."""
    pixels = (to_rgb_tensor(item, index) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def describe(item: Any) -> str:
    """A short description of a wrong item, for error messages."""
    if isinstance(item, str):
        return f"the string {item[:40]!r}"
    if item is None or isinstance(item, (int, float, bool)):
        return repr(item)
    return f"a {type(item).__module__}.{type(item).__qualname__}"


def _from_pil(image: Image.Image) -> torch.Tensor:
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_DEPTH_MODES:  # 16/32-bit grey or float: convert("RGB") would clip to 255
        grey = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()) / HIGH_DEPTH_MODES[image.mode]
        return grey.clamp(0, 1).expand(3, -1, -1)
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, WHITE), image.convert("RGBA"))
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a NUL byte or an over-long name: text, not a path
        return False


def _three_channels(tensor: torch.Tensor) -> torch.Tensor:
    """Grey as three equal channels; for four channels, RGB composited over white by the alpha channel."""
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1)
    if tensor.shape[0] == 4:
        alpha = tensor[3:]
        return tensor[:3] * alpha + (1 - alpha)
    return tensor
