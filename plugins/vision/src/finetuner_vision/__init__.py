"""finetuner-vision: torchvision and timm image backbones for finetuner.

The hooks are in :mod:`finetuner_vision.plugin`, the tower in :mod:`finetuner_vision.tower`.
"""

__version__ = "0.1.0"
