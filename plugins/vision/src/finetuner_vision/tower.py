"""ImageTower: a headless image backbone with its own preprocessing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.models import Tower
from finetuner.models.inference import bf16_inference, fold_batch_norm, free_bf16_copy, run_bf16_copy
from finetuner_vision.images import ImagePreprocessing

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

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = features["pixel_values"]
        channels_last = self._conv_weight and pixels.dim() == 4 and self._weights_channels_last()
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        if bf16_inference(pixels.device.type):
            out = run_bf16_copy(
                self,
                self.backbone,
                pixels.to(torch.bfloat16),
                prepare=_copy_preparation(channels_last, fold=pixels.device.type == "cpu"),
            ).float()
        else:
            if torch.is_grad_enabled():
                free_bf16_copy(self)  # training: free the inference copy
            out = self.backbone(pixels)
        if self.pool is not None:
            if self.channels_axis != 1:
                out = out.movedim(self.channels_axis, 1)
            out = self.pool(out)
        return out

    def _weights_channels_last(self) -> bool:
        weight = self.backbone.get_parameter(self._conv_weight)
        return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    def save_files(self, directory: Path) -> None:
        self.preprocessing.save(directory)


def _copy_preparation(channels_last: bool, fold: bool) -> Callable[[nn.Module], nn.Module]:
    """How a backbone's bf16 inference copy is prepared: same memory format, BatchNorm folded if ``fold``.

    Folding pays on CPUs (+7 % for resnet50). On an H100 it cost 10 %: cuDNN runs the convolutions without
    a bias faster than the folded ones with it (bench/gpu-h100-2026-11-27).
    """

    def prepare(backbone: nn.Module) -> nn.Module:
        if fold:
            backbone = fold_batch_norm(backbone)
        return backbone.to(memory_format=torch.channels_last) if channels_last else backbone

    return prepare
