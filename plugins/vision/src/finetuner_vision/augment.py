"""Training-time augmentation of the vision towers: :class:`finetuner.models.ImageAugmentation` at a tower's preprocessing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetuner.models import ImageAugmentation
from finetuner_vision.images import load_image


def tower_augmentation(config: Mapping[str, Any], options: Mapping[str, Any]) -> ImageAugmentation:
    """timm's training transform at the input size, interpolation and normalisation of ``config``.

    ``config`` is the tower's :class:`~finetuner_vision.images.ImagePreprocessing` config.
    """
    size = tuple(config["input_size"]) if config["library"] == "timm" else (3, config["crop_size"], config["crop_size"])
    settings = {
        "input_size": size,
        "interpolation": config["interpolation"],
        "mean": tuple(config["mean"]),
        "std": tuple(config["std"]),
    }
    return ImageAugmentation(settings, options, load_image)
