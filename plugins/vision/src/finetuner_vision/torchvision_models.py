"""torchvision backbones (ResNet, EfficientNet) as image towers."""

from __future__ import annotations

import functools
from pathlib import Path

from torch import nn
from torchvision import models

from finetuner import UnknownNameError
from finetuner.models import GeM
from finetuner_vision.images import ImagePreprocessing
from finetuner_vision.tower import POOLINGS, ImageTower
from finetuner_vision.weights import ensure_downloadable, load_weights_file, not_available

# The attribute holding the classifier (ResNet: fc, EfficientNet: classifier); it becomes Identity.
CLASSIFIER_ATTRIBUTES = ("fc", "classifier")


def build_torchvision(
    arch: str,
    *,
    pretrained: bool = True,
    local_dir: str | Path | None = None,
    pooling: str = "avg",
    weights: str | Path | None = None,
    image_size: int | None = None,
) -> ImageTower:
    """Build torchvision ``arch`` as a tower: classifier removed, average or GeM pooling.

    ``pretrained`` loads the default ImageNet weights (``TORCH_HOME`` cache or download);
    ``weights`` a local state dict in torchvision's key names instead. ``image_size`` resizes
    and crops inputs to that square size instead of the weights' own (e.g. for small images).
    ``local_dir`` is a folder a saved tower wrote; its preprocessing config is used.
    """
    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    default = models.get_model_weights(arch).DEFAULT
    label = f"torchvision {arch}"
    if pretrained and weights is None:
        ensure_downloadable(default.url, label)
        try:
            model = models.get_model(arch, weights=default, progress=False)
        except OSError as exc:  # URLError, HTTPError, a broken connection
            raise not_available(label, f"downloading {default.url} failed: {exc}") from exc
    else:
        model = models.get_model(arch, weights=None)
    classifier = next(a for a in CLASSIFIER_ATTRIBUTES if hasattr(model, a))
    output_dim = _in_features(getattr(model, classifier))
    setattr(model, classifier, nn.Identity())
    if weights is not None:
        load_weights_file(model, weights, model=label, ignore=[classifier])
    if pooling == "gem":
        model.avgpool = GeM()  # ResNet and EfficientNet flatten after `avgpool`; GeM already returns [N, C]
    if local_dir is not None:
        preprocessing = ImagePreprocessing.load(local_dir)
    else:
        preprocessing = ImagePreprocessing.from_torchvision(default)
        preprocessing = preprocessing.with_size(image_size) if image_size is not None else preprocessing
    return ImageTower(model, output_dim=output_dim, preprocessing=preprocessing, channels_last=True)


def _in_features(head: nn.Module) -> int:
    linear = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return linear.in_features


resnet50 = functools.partial(build_torchvision, "resnet50")
resnet152 = functools.partial(build_torchvision, "resnet152")
efficientnet_b0 = functools.partial(build_torchvision, "efficientnet_b0")
efficientnet_b4 = functools.partial(build_torchvision, "efficientnet_b4")
