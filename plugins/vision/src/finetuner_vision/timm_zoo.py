"""Builders of timm models by name: the spec of ``timm/<name>`` has ``build="finetuner_vision.timm_zoo:<name>"``.

``getattr(timm_zoo, name)`` is ``build_image_tower`` with ``build_timm`` and the name bound, so a
recorded spec (and an artifact) rebuilds the same timm model through the ordinary ``"module:function"`` contract.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from finetuner_vision.builder import build_image_tower
from finetuner_vision.timm_models import build_timm
from finetuner_vision.tower import ImageTower


def __getattr__(name: str) -> Callable[..., ImageTower]:
    if name.startswith("__"):
        raise AttributeError(name)
    return functools.partial(build_image_tower, build_timm, name)
