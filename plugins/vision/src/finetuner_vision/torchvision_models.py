"""torchvision backbones (ResNet, EfficientNet) as image towers."""

from __future__ import annotations

import functools

from torch import nn
from torchvision import models

from finetuner.models import GeM
from finetuner_vision.builder import ImageOptions, build_image_tower
from finetuner_vision.images import ImagePreprocessing
from finetuner_vision.tower import ImageTower
from finetuner_vision.weights import ensure_downloadable, load_weights_file, not_available

# The attribute holding the classifier (ResNet: fc, EfficientNet: classifier); it becomes Identity.
CLASSIFIER_ATTRIBUTES = ("fc", "classifier")


def build_torchvision(arch: str, options: ImageOptions) -> ImageTower:
    """torchvision ``arch`` as a tower: classifier removed, average or GeM pooling.

    Pretrained weights are the default ImageNet ones (``TORCH_HOME`` cache or download);
    ``options.weights`` is a state dict in torchvision's key names.
    """
    default = models.get_model_weights(arch).DEFAULT
    label = f"torchvision {arch}"
    if options.pretrained and options.weights is None:
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
    if options.weights is not None:
        load_weights_file(model, options.weights, model=label, ignore=[classifier])
    if options.pooling == "gem":
        model.avgpool = GeM()  # ResNet and EfficientNet flatten after `avgpool`; GeM already returns [N, C]
    preprocessing = options.preprocessing(lambda: ImagePreprocessing.from_torchvision(default))
    return ImageTower(model, output_dim=output_dim, preprocessing=preprocessing, channels_last=True)


def _in_features(head: nn.Module) -> int:
    linear = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return linear.in_features


resnet50 = functools.partial(build_image_tower, build_torchvision, "resnet50")
resnet152 = functools.partial(build_image_tower, build_torchvision, "resnet152")
efficientnet_b0 = functools.partial(build_image_tower, build_torchvision, "efficientnet_b0")
efficientnet_b4 = functools.partial(build_image_tower, build_torchvision, "efficientnet_b4")
