"""EmbeddingModel: one tower (same encoder for queries and documents) or two (text and image)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.errors import OptionError, UnknownNameError
from finetuner.models.tower import Tower

CLIP_INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
SIGLIP_INITIAL_LOGIT_SCALE = math.log(10.0)  # SigLIP's paper, for a temperature and bias trained from scratch
SIGLIP_INITIAL_LOGIT_BIAS = -10.0


class EmbeddingModel(nn.Module):
    """Towers keyed by modality, then an optional projection per tower, then L2 normalisation.

    ``sources`` records which backbones (name, plugin, build options, modalities) the towers
    came from, so an artifact can rebuild the same architecture offline. A two-tower model has a
    learnable ``logit_scale`` (log inverse temperature: ClipLoss and SigLIPLoss scale cosines by
    its exp); ``logit_bias`` is SigLIP's learned bias, present when the backbone has one or
    SigLIPLoss trained the model (:meth:`add_logit_bias`), else None.
    """

    def __init__(
        self,
        towers: Mapping[str, Tower],
        *,
        sources: Sequence[dict[str, Any]] = (),
        output_dim: int | None = None,
        normalize: bool = True,
        logit_scale: float | None = None,
        logit_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.towers = nn.ModuleDict(dict(towers))
        self.sources = [dict(s) for s in sources]
        self.normalize = normalize
        dims = {m: t.output_dim for m, t in towers.items()}
        if output_dim is None and len(set(dims.values())) > 1:
            raise ValueError(f"towers have different dimensions {dims}: pass output_dim= to project them into one space")
        self.projections = nn.ModuleDict({m: nn.Linear(d, output_dim) for m, d in dims.items()}) if output_dim else None
        if len(towers) > 1:
            self.logit_scale = nn.Parameter(
                torch.tensor(float(logit_scale if logit_scale is not None else CLIP_INITIAL_LOGIT_SCALE))
            )
        else:
            self.logit_scale = None
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias))) if logit_bias is not None else None
        self.lora: dict[str, Any] | None = None  # LoRA settings and adapted layers by tower, when adapted (finetuner.lora)
        self.matryoshka_dims: tuple[int, ...] | None = None  # the truncations it was trained for (MatryoshkaLoss)
        self.quantization_ranges: dict[int, Any] = {}  # int8/uint8 ranges ([2, dim] arrays) by dim (finetuner.calibrate)

    def add_logit_bias(self) -> None:
        """Give the model a SigLIP bias, and a temperature where it has none (one tower), at SigLIP's initial values.

        SigLIPLoss scores with the model's ``logit_scale`` and ``logit_bias``; fit calls this for
        a model without them, so what the loss learns is the model's and travels with it.
        """
        device = next(self.parameters()).device
        if self.logit_scale is None:
            self.logit_scale = nn.Parameter(torch.tensor(SIGLIP_INITIAL_LOGIT_SCALE, device=device))
        if self.logit_bias is None:
            self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INITIAL_LOGIT_BIAS, device=device))

    @property
    def modalities(self) -> list[str]:
        return list(self.towers.keys())

    @property
    def output_dim(self) -> int:
        if self.projections is not None:
            return next(iter(self.projections.values())).out_features
        return next(iter(self.towers.values())).output_dim

    @property
    def task(self) -> str:
        modalities = set(self.modalities)
        if modalities == {"text", "image"}:
            return "text-to-image"
        return "text-to-text" if modalities == {"text"} else "image-to-image"

    @property
    def projection_dim(self) -> int | None:
        return self.output_dim if self.projections is not None else None

    def tower(self, modality: str | None = None) -> Tower:
        if modality is None:
            if len(self.towers) > 1:
                raise OptionError(f"this model has towers {self.modalities}: say which with modality=")
            return next(iter(self.towers.values()))
        if modality not in self.towers:
            raise UnknownNameError("tower", str(modality), self.modalities)
        return self.towers[modality]

    def forward(self, features: dict[str, torch.Tensor], modality: str | None = None) -> torch.Tensor:
        """Embed preprocessed features with one tower; the result is fp32."""
        if modality is None and len(self.towers) == 1:
            modality = self.modalities[0]
        return self.head(self.tower(modality)(features), modality)

    def head(self, backbone_embeddings: torch.Tensor, modality: str) -> torch.Tensor:
        """What follows the tower: projection (if any), then fp32 L2 normalisation (if on)."""
        embeddings = backbone_embeddings
        if self.projections is not None:
            embeddings = self.projections[modality](embeddings)
        embeddings = embeddings.float()
        return F.normalize(embeddings, dim=-1) if self.normalize else embeddings

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for t in self.towers.values() for p in t.parameters()]

    def freeze(self, towers: bool | str | Sequence[str] = True) -> None:
        """Freeze the backbone of every tower (True) or of the named ones; projections stay trainable.

        A tower with a LoRA adapter that is not frozen trains its adapter only.
        """
        if towers is False:
            names: list[str] = []
        elif towers is True:
            names = self.modalities
        elif isinstance(towers, str) or (isinstance(towers, Sequence) and all(isinstance(t, str) for t in towers)):
            names = [towers] if isinstance(towers, str) else list(towers)
        else:
            raise OptionError(f"freeze must be True, False, a tower name or a list of them ({self.modalities}), got {towers!r}")
        for name in names:
            if name not in self.towers:
                raise UnknownNameError("tower to freeze", name, self.modalities, hint="freeze= names towers by modality.")
        for name, tower in self.towers.items():
            tower.requires_grad_(name not in names)
            if self.lora is not None and name in self.lora["target_modules"] and name not in names:
                from finetuner.lora import freeze_base

                freeze_base(tower)

    def frozen_modalities(self) -> list[str]:
        return [m for m, t in self.towers.items() if not any(p.requires_grad for p in t.parameters())]
