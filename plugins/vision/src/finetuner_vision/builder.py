"""The options every image backbone takes, declared and checked once for the torchvision and timm families."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from finetuner import UnknownNameError
from finetuner_vision.images import ImagePreprocessing
from finetuner_vision.tower import POOLINGS, ImageTower


class ImageOptions(NamedTuple):
    """A family builder's options (see :func:`build_image_tower`); ``pooling`` is one of :data:`POOLINGS`."""

    pretrained: bool
    local_dir: str | Path | None
    pooling: str
    weights: str | Path | None
    image_size: int | None

    def preprocessing(self, default: Callable[[], ImagePreprocessing]) -> ImagePreprocessing:
        """The saved tower's preprocessing (``local_dir``), else ``default()`` resized to ``image_size`` when set."""
        if self.local_dir is not None:
            return ImagePreprocessing.load(self.local_dir)
        preprocessing = default()
        return preprocessing if self.image_size is None else preprocessing.with_size(self.image_size)


def build_image_tower(
    family: Callable[[str, ImageOptions], ImageTower],
    name: str,
    *,
    pretrained: bool = True,
    local_dir: str | Path | None = None,
    pooling: str = "avg",
    weights: str | Path | None = None,
    image_size: int | None = None,
) -> ImageTower:
    """Build backbone ``name`` with ``family`` (``build_torchvision`` or ``build_timm``) as a tower.

    ``pretrained`` loads the family's pretrained weights (a cache or a download); ``weights`` a
    local state dict in the family's key names instead. ``pooling`` is ``"avg"`` or ``"gem"``
    (GeM over the last feature map). ``image_size`` resizes and crops inputs to that square
    size instead of the weights' own. ``local_dir`` is a folder a saved tower wrote; its
    preprocessing config is used.
    """
    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    return family(name, ImageOptions(pretrained, local_dir, pooling, weights, image_size))
