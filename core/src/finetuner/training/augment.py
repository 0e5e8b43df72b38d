"""Training-time augmentation (``fit(augment=...)``): which towers transform their inputs, and each item's seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from finetuner.errors import TrainingError
from finetuner.models.embedding import EmbeddingModel
from finetuner.models.tower import Augmentation


def augmentations(
    model: EmbeddingModel, modalities: Sequence[str], augment: bool | dict[str, Any] | None
) -> dict[str, Augmentation]:
    """The augmentation of each trained tower that has one, by modality, as ``augment`` asks.

    None (the default) and False augment nothing: timm's defaults are ImageNet's, and on Omniglot
    they cut MAP@R from 0.37 to 0.09 (bench/bench_quality_omniglot.py). True or a mapping of the
    tower's options augments the image tower, refusing models without one.
    """
    if augment is None or augment is False:
        return {}
    if "image" not in modalities:
        raise TrainingError(
            f"augment={augment!r} transforms images, and this {model.task} model trains no image tower; "
            "leave augment unset (or False)"
        )
    tower = model.tower("image")
    built = tower.augmentation({} if augment is True else dict(augment))
    if built is None:
        raise TrainingError(
            f"augment={augment!r}: the image tower {type(tower).__name__} has no training-time augmentation; leave augment unset"
        )
    return {"image": built}


def item_seeds(seed: int, epoch: int, side: int, indices: Sequence[int]) -> list[int]:
    """One seed per item, from the run's seed, the epoch, the side of the data and the item's index alone."""
    return [int(np.random.SeedSequence([seed, epoch, side, index]).generate_state(1)[0]) for index in indices]
