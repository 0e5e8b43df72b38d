"""Training-time augmentation of the plugin's image towers: timm's training transform at each tower's size and normalisation.

Each item is transformed with Python's, numpy's and torch's global generators (which timm's
transforms draw from) seeded from the item's own seed, and the caller's generator states are
restored afterwards, so an item's features depend on its seed alone, in any process.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from finetuner import DataError, OptionError, UnknownNameError
from finetuner.models import Tower
from finetuner_multimodal.images import to_pil

# timm.data.create_transform's training options a user may set; the tower fixes input_size, mean and std
OPTIONS = (
    "scale",
    "ratio",
    "hflip",
    "vflip",
    "color_jitter",
    "color_jitter_prob",
    "grayscale_prob",
    "gaussian_blur_prob",
    "auto_augment",
    "interpolation",
    "train_crop_mode",
    "re_prob",
    "re_mode",
    "re_count",
)
PROBE_SIZE = 64  # the side of the constant images a tower's preprocessing is read from


class ImageAugmentation:
    """``timm.data.create_transform(is_training=True)`` at an input size, interpolation, mean and std.

    ``options`` override timm's defaults (random resized crop of 8-100% of the area, horizontal
    flip half the time, colour jitter 0.4). Called with items and one seed per item, it returns
    ``{"pixel_values": [N, 3, H, W]}``, as the tower's ``preprocess`` does.
    """

    def __init__(self, settings: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        from timm.data import create_transform

        for name in options:
            if name not in OPTIONS:
                raise UnknownNameError("augment option", str(name), OPTIONS, hint="They are timm.data.create_transform's.")
        self.settings = {**settings, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}}
        try:
            self.transform = create_transform(**self.settings, is_training=True)
            self.transform(Image.new("RGB", (8, 8)))  # options that fail only when applied fail now
        except Exception as exc:  # noqa: BLE001 - timm raises anything for a bad value
            raise OptionError(f"augment={dict(options)} does not make a timm training transform: {exc}") from exc

    def __call__(self, items: Sequence[Any], seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        if not items:
            raise DataError("no images to preprocess")
        pixels = []
        with torch.no_grad(), _restored_generators():
            for index, (item, seed) in enumerate(zip(items, seeds, strict=True)):
                image = to_pil(item, index)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
                pixels.append(self.transform(image))
        return {"pixel_values": torch.stack(pixels)}


def tower_augmentation(tower: Tower, interpolation: str, options: Mapping[str, Any]) -> ImageAugmentation | None:
    """The augmentation of an image tower whose preprocessing gives fixed-size ``pixel_values`` (None otherwise).

    The input size, mean and std are read from what the tower's own preprocessing makes of a
    black and a white image, so every processor's rescaling and normalisation is honoured.
    """
    features = tower.preprocess([torch.zeros(3, PROBE_SIZE, PROBE_SIZE), torch.ones(3, PROBE_SIZE, PROBE_SIZE)])
    if set(features) != {"pixel_values"}:  # a variable-size preprocessing (SigLIP 2's NaFlex patches)
        return None
    pixels = features["pixel_values"].double()
    black, white = pixels[0, :, 0, 0], pixels[1, :, 0, 0]  # -mean / std and (1 - mean) / std, per channel
    std = 1 / (white - black)
    mean = -black * std
    settings = {
        "input_size": (3, *pixels.shape[-2:]),
        "interpolation": interpolation,
        "mean": tuple(round(float(m), 6) for m in mean),
        "std": tuple(round(float(s), 6) for s in std),
    }
    return ImageAugmentation(settings, options)


@contextlib.contextmanager
def _restored_generators() -> Iterator[None]:
    """Python's, numpy's and torch's (CPU) global generators as they were before."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
