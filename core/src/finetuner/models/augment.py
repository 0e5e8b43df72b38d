"""Training-time augmentation of image towers: timm's training transform, each item drawn from its own seed.

A plugin's image tower returns an :class:`ImageAugmentation` from ``Tower.augmentation``, made
with its input size, interpolation, mean and std and its own image reader. timm's transforms
draw from Python's, numpy's and torch's global generators; each item is transformed with all
three seeded from its seed, and the caller's generator states are restored afterwards, so an
item's features depend on its seed alone, in any process. timm is imported only when one is made.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from finetuner.errors import DataError, OptionError, UnknownNameError

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


class ImageAugmentation:
    """``timm.data.create_transform(is_training=True)`` at a tower's input size, interpolation and normalisation.

    ``settings`` holds timm's ``input_size``, ``interpolation``, ``mean`` and ``std`` for the
    tower; ``options`` (``fit(augment={...})``) override timm's defaults (random resized crop of
    8-100% of the area, horizontal flip half the time, colour jitter 0.4); ``to_image`` reads
    item ``index`` into an RGB ``PIL.Image``. Called with items and one seed per item, it
    returns ``{"pixel_values": [N, 3, H, W]}``, as an image tower's ``preprocess`` does.
    """

    def __init__(self, settings: Mapping[str, Any], options: Mapping[str, Any], to_image: Callable[[Any, int], Any]) -> None:
        from PIL import Image
        from timm.data import create_transform

        for name in options:
            if name not in OPTIONS:
                raise UnknownNameError("augment option", str(name), OPTIONS, hint="They are timm.data.create_transform's.")
        self.to_image = to_image
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
                image = self.to_image(item, index)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
                pixels.append(self.transform(image))
        return {"pixel_values": torch.stack(pixels)}


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
