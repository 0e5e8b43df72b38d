"""ImageTower: a headless image backbone with its own preprocessing."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner import ExportError
from finetuner.models import ImageAugmentation, Tower
from finetuner_vision.augment import tower_augmentation
from finetuner_vision.images import ImagePreprocessing

logger = logging.getLogger("finetuner.vision")
POOLINGS = ("avg", "gem")


class ImageTower(Tower):
    """Pixels in (``features["pixel_values"]``, ``[N, 3, H, W]``), ``[N, output_dim]`` out.

    ``backbone`` returns the embedding itself, or, when ``pool`` is given, a feature map
    (``NCHW``, or ``NHWC`` with ``channels_axis=-1``) that ``pool`` reduces.
    """

    modality = "image"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        output_dim: int,
        preprocessing: ImagePreprocessing,
        pool: nn.Module | None = None,
        channels_axis: int = 1,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.output_dim = output_dim
        self.preprocessing = preprocessing
        self.channels_axis = channels_axis
        self.channels_last = channels_last
        # The first 4-D weight tells whether the module was converted to channels_last.
        self._conv_weight = next((n for n, p in backbone.named_parameters() if p.dim() == 4), None)

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.preprocessing(items)}

    def augmentation(self, options: Mapping[str, Any]) -> ImageAugmentation:
        """timm's training transform at this tower's input size and normalisation, ``options`` overriding timm's defaults."""
        return tower_augmentation(self.preprocessing.config, options)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = features["pixel_values"]
        if self._conv_weight and pixels.dim() == 4 and self._weights_channels_last():
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        out = self.run_encoder(self.backbone, pixels)
        if self.pool is not None:
            if self.channels_axis != 1:
                out = out.movedim(self.channels_axis, 1)
            out = self.pool(out)
        return out

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """timm's ``set_grad_checkpointing``; torchvision's models have none, so the default refuses them."""
        if not hasattr(self.backbone, "set_grad_checkpointing"):
            super().set_gradient_checkpointing(enabled)
        self.backbone.set_grad_checkpointing(enabled)

    def _weights_channels_last(self) -> bool:
        weight = self.backbone.get_parameter(self._conv_weight)
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    def prepare_bf16_copy(self, module: nn.Module, device_type: str) -> nn.Module:
        """The backbone's bf16 inference copy: the same memory format, BatchNorm folded on CPU.

        Folding pays on CPUs. On CUDA it does not: cuDNN runs the convolutions without a bias
        faster than the folded ones with it (bench/README.md).
        """
        if device_type == "cpu":
            module = fold_batch_norm(module)
        channels_last = self._conv_weight is not None and self._weights_channels_last()
        return module.to(memory_format=torch.channels_last) if channels_last else module

    def save_files(self, directory: Path) -> None:
        self.preprocessing.save(directory)

    @property
    def export_formats(self) -> tuple[str, ...]:  # type: ignore[override]
        """timm's format, for timm backbones."""
        return ("timm",) if self.preprocessing.config.get("library") == "timm" else ()

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """timm's ``config.json`` (the architecture, no classifier, this tower's preprocessing); the backbone's weights."""
        if self.pool is not None:
            raise ExportError(
                "timm has no GeM pooling, which this tower uses (pooling='gem'): export it to ONNX (finetuner export --onnx), "
                "or fine-tune with pooling='avg'"
            )
        from finetuner_vision.timm_models import timm_config

        (Path(directory) / "config.json").write_text(json.dumps(timm_config(self.backbone, self.preprocessing.config), indent=2))
        return dict(self.backbone.state_dict())


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """The module with each eval-mode BatchNorm folded into the convolution before it.

    Works on modules :func:`torch.fx.symbolic_trace` can trace (torchvision and most timm
    CNNs); others are returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as error:  # noqa: BLE001 - any tracing failure: run the module as it is
        logger.debug("BatchNorm folding skipped for %s: %s", type(module).__name__, error)
        return module
