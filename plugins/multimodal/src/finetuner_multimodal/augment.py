"""Training-time augmentation of the plugin's image towers: :class:`finetuner.models.ImageAugmentation` at each tower's size and normalisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from finetuner.models import ImageAugmentation, Tower
from finetuner_multimodal.images import to_pil

PROBE_SIZE = 64  # the side of the constant images a tower's preprocessing is read from


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
    return ImageAugmentation(settings, options, to_pil)
