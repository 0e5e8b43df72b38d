"""CLIP's symmetric contrastive loss with the model's learnable temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.losses.base import fp32
from finetuner.losses.in_batch import check_pairs, gather_pairs

MAX_LOGIT_SCALE = math.log(100.0)


class ClipLoss(nn.Module):
    """Mean of text -> image and image -> text cross-entropy over ``exp(logit_scale) * cosine``.

    ``logit_scale`` is the model's parameter (the log of the inverse temperature); it is
    clamped at ``log(100)`` as CLIP does, and receives a gradient below that. Hard negative
    images (``negatives``: ``[N * k, dim]``, pair ``i``'s ``k`` in rows ``i * k`` onwards) join the
    images each text is scored against; ``groups`` (one id per pair, equal for pairs of the same
    text) keeps a text's other images out of its negatives, and the other way round. Under
    ``torch.distributed`` each rank scores its own texts against every rank's images (and hard
    negatives) and its own images against every rank's texts.
    """

    kinds = ("pairs",)

    @fp32
    def forward(
        self,
        text_emb: torch.Tensor,
        image_emb: torch.Tensor,
        logit_scale: torch.Tensor | float,
        negatives: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_pairs(text_emb, image_emb)
        texts, images = F.normalize(text_emb, dim=-1), F.normalize(image_emb, dim=-1)
        scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=texts.device).clamp(max=MAX_LOGIT_SCALE).exp()
        pairs = gather_pairs(texts, images, negatives, groups)
        targets = pairs.targets
        loss = F.cross_entropy(pairs.mask(scale * texts @ pairs.candidates.T), targets, reduction="sum")
        loss = loss + F.cross_entropy(pairs.mask(scale * images @ pairs.left.T), targets, reduction="sum")
        return pairs.batch.share(loss) / 2
