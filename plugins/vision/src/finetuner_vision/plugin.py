"""The plugin's hooks (entry point ``vision``): torchvision and timm image backbones.

Describes models only: torch, torchvision and timm are imported when a model is built or a
``timm/<name>`` is resolved.
"""

from __future__ import annotations

from collections.abc import Callable

import finetuner
from finetuner import BackboneSpec

TIMM_PREFIX = "timm/"

# name -> true embedding dimension (the width of the last feature map).
TORCHVISION_MODELS = {
    "resnet50": 2048,
    "resnet152": 2048,
    "efficientnet_b0": 1280,
    "efficientnet_b4": 1792,
}

# A few well-known timm backbones shown in the table: name -> (dimension, architecture).
TIMM_LISTED = {
    "convnext_tiny": (768, "CNN"),
    "efficientnet_b0": (1280, "CNN"),
    "resnet50": (2048, "CNN"),
    "vit_small_patch16_224": (384, "transformer"),
    "vit_base_patch16_224": (768, "transformer"),
}

TIMM_DESCRIPTION = "Pretrained on ImageNet (timm); any timm/<name> builds"


def timm_builder(name: str) -> str:
    """The ``"module:function"`` builder of a timm model (see :mod:`finetuner_vision.timm_zoo`)."""
    return f"finetuner_vision.timm_zoo:{name}"


@finetuner.hookimpl
def finetuner_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    for name, dim in TORCHVISION_MODELS.items():
        register(
            BackboneSpec(
                name=name,
                task="image-to-image",
                output_dim=dim,
                architecture="CNN",
                description="Pretrained on ImageNet",
                build=f"finetuner_vision.torchvision_models:{name}",
            )
        )
    for name, (dim, architecture) in TIMM_LISTED.items():
        register(
            BackboneSpec(
                name=TIMM_PREFIX + name,
                task="image-to-image",
                output_dim=dim,
                architecture=architecture,
                description=TIMM_DESCRIPTION,
                build=timm_builder(name),
            )
        )


@finetuner.hookimpl
def finetuner_resolve_backbone(name: str) -> BackboneSpec | None:
    """Any ``timm/<timm model name>`` (tags such as ``.augreg_in21k`` included) resolves."""
    if not name.startswith(TIMM_PREFIX):
        return None
    from finetuner_vision.timm_models import resolve_spec

    return resolve_spec(name[len(TIMM_PREFIX) :])
