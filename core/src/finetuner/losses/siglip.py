"""SigLIP's pairwise sigmoid loss with a learnable temperature and bias (Zhai et al., 2023)."""

from __future__ import annotations

import math

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
    temperature t' (``logit_scale``) and the bias b (``logit_bias``) are the loss's own
    parameters, initialised at log 10 and -10 as in the paper, so the loss reports
    ``needs_optimizer``. Under ``torch.distributed`` each rank scores its own texts against
    every rank's images, so each pair of the global batch counts once.
    """

    kinds = ("pairs",)

    def __init__(self, logit_scale: float = math.log(10.0), logit_bias: float = -10.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias)))

    @fp32
    def forward(self, text_emb: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        check_pairs(text_emb, image_emb)
        texts, images = F.normalize(text_emb, dim=-1), F.normalize(image_emb, dim=-1)
        batch = gather_batch(images)
        logits = self.logit_scale.exp() * texts @ batch.tensors[0].T + self.logit_bias
        rows = torch.arange(texts.shape[0], device=texts.device)
        signs = -torch.ones_like(logits)
        signs[rows, rows + batch.offset] = 1.0
        return batch.share(-F.logsigmoid(signs * logits).sum())
