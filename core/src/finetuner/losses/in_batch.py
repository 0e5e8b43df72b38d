"""In-batch negatives (MultipleNegativesRankingLoss, a.k.a. InfoNCE) for (query, document) pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.losses.base import fp32
from finetuner.losses.distributed import gather_batch


def check_pairs(left: torch.Tensor, right: torch.Tensor) -> None:
    if left.ndim != 2 or left.shape != right.shape:
        raise ValueError(
            f"pair embeddings must be two [N, dim] tensors of the same shape, got {tuple(left.shape)} and {tuple(right.shape)}"
        )


class MultipleNegativesRankingLoss(nn.Module):
    """Cross-entropy over ``scale * cosine(query_i, document_j)``: document ``i`` is query ``i``'s positive,
    every other document in the (global) batch a negative.

    ``symmetric=True`` adds the document -> query direction and averages the two. Under
    ``torch.distributed`` each rank scores its own queries against every rank's documents.
    """

    kinds = ("pairs",)

    def __init__(self, scale: float = 20.0, symmetric: bool = False) -> None:
        super().__init__()
        self.scale = float(scale)
        self.symmetric = bool(symmetric)

    @fp32
    def forward(self, query_emb: torch.Tensor, doc_emb: torch.Tensor) -> torch.Tensor:
        check_pairs(query_emb, doc_emb)
        queries, docs = F.normalize(query_emb, dim=-1), F.normalize(doc_emb, dim=-1)
        batch = gather_batch(queries, docs)
        all_queries, all_docs = batch.tensors
        targets = torch.arange(queries.shape[0], device=queries.device) + batch.offset
        loss = F.cross_entropy(self.scale * queries @ all_docs.T, targets, reduction="sum")
        if self.symmetric:
            loss = (loss + F.cross_entropy(self.scale * docs @ all_queries.T, targets, reduction="sum")) / 2
        return batch.share(loss)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, symmetric={self.symmetric}"
