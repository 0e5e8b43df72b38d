"""SigLIP's pairwise sigmoid loss with a learnable temperature and bias (Zhai et al., 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.losses.base import fp32
from finetuner.losses.distributed import gather_batch
from finetuner.losses.in_batch import check_pairs


class SigLIPLoss(nn.Module):
    """Every (text, image) pair of the batch is a binary problem: matching or not.

    ``-1/N * sum over i, j of log sigmoid(z_ij * (exp(t') * cosine_ij + b))`` with ``z_ij = 1``
    for a matching pair (``i == j``) and -1 otherwise, N the number of pairs. The log
    temperature t' (``logit_scale``) and the bias b (``logit_bias``) are the model's, as
    ClipLoss's temperature is: a pretrained SigLIP starts from the values it learned, and
    fit gives a model without them SigLIP's initial log 10 and -10
    (:meth:`~finetuner.models.EmbeddingModel.add_logit_bias`). Under ``torch.distributed``
    each rank scores its own texts against every rank's images, so each pair of the global
    batch counts once.
    """

    kinds = ("pairs",)

    @fp32
    def forward(
        self,
        text_emb: torch.Tensor,
        image_emb: torch.Tensor,
        *,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float,
    ) -> torch.Tensor:
        check_pairs(text_emb, image_emb)
        texts, images = F.normalize(text_emb, dim=-1), F.normalize(image_emb, dim=-1)
        batch = gather_batch(images)
        scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=texts.device).exp()
        bias = torch.as_tensor(logit_bias, dtype=torch.float32, device=texts.device)
        logits = scale * texts @ batch.tensors[0].T + bias
        rows = torch.arange(texts.shape[0], device=texts.device)
        signs = -torch.ones_like(logits)
        signs[rows, rows + batch.offset] = 1.0
        return batch.share(-F.logsigmoid(signs * logits).sum())
