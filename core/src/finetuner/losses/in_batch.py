"""In-batch negatives (MultipleNegativesRankingLoss, a.k.a. InfoNCE) for (query, document) pairs."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.losses.base import fp32
from finetuner.losses.distributed import GlobalBatch, gather_batch


def check_pairs(left: torch.Tensor, right: torch.Tensor) -> None:
    if left.ndim != 2 or left.shape != right.shape:
        raise ValueError(
            f"pair embeddings must be two [N, dim] tensors of the same shape, got {tuple(left.shape)} and {tuple(right.shape)}"
        )


def per_pair(negatives: torch.Tensor | None, anchors: torch.Tensor) -> torch.Tensor | None:
    """Hard-negative embeddings ``[N * k, dim]`` (pair ``i``'s in rows ``i * k`` to ``i * k + k - 1``) as a
    normalised ``[N, k, dim]`` tensor; None stays None."""
    if negatives is None:
        return None
    rows, dim = anchors.shape
    if negatives.ndim != 2 or negatives.shape[1] != dim or rows == 0 or negatives.shape[0] % rows:
        raise ValueError(
            f"negative embeddings must be [N * k, {dim}] for {rows} pairs (k negatives each), got {tuple(negatives.shape)}"
        )
    return F.normalize(negatives, dim=-1).view(rows, -1, dim)


class PairBatch(NamedTuple):
    """Pairs gathered over ranks: the left sides, the candidates (right sides, then hard negatives), each
    local row's own pair among them (``targets``) and ``others``: True where a candidate is another pair
    of the same group (``[local rows, global pairs]``), or None."""

    batch: GlobalBatch
    left: torch.Tensor
    candidates: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor | None

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` over the gathered pairs (and maybe hard negatives after them) with the same group's others at -inf."""
        if self.others is None:
            return logits
        return logits.masked_fill(F.pad(self.others, (0, logits.shape[1] - self.others.shape[1])), -torch.inf)


def gather_pairs(
    left: torch.Tensor, right: torch.Tensor, negatives: torch.Tensor | None, groups: torch.Tensor | None
) -> PairBatch:
    """Normalised ``left``/``right`` (and hard ``negatives``) gathered over ranks, for in-batch losses.

    ``groups`` (one integer per pair, such as the id of its query) marks pairs that share a query:
    their documents are each other's positives, never negatives (:meth:`PairBatch.mask`).
    """
    hard = per_pair(negatives, left)
    extras = [t for t in (hard, groups) if t is not None]
    batch = gather_batch(left, right, *extras)
    all_left, all_right, *rest = batch.tensors
    all_hard = rest.pop(0) if hard is not None else None
    candidates = all_right if all_hard is None else torch.cat([all_right, all_hard.flatten(0, 1)])
    targets = torch.arange(len(left), device=left.device) + batch.offset
    others = None
    if groups is not None:
        others = groups[:, None] == rest.pop(0)[None, :]
        others[torch.arange(len(left), device=left.device), targets] = False
    return PairBatch(batch, all_left, candidates, targets, others)


class MultipleNegativesRankingLoss(nn.Module):
    """Cross-entropy over ``scale * cosine(query_i, document_j)``: document ``i`` is query ``i``'s positive,
    every other document in the (global) batch a negative, and so is every pair's hard negative
    (``negatives``: ``[N * k, dim]``, pair ``i``'s ``k`` in rows ``i * k`` onwards). With ``groups``
    (one id per pair, equal for pairs of the same query), the documents of a query's other pairs
    are left out of its negatives.

    ``symmetric=True`` adds the document -> query direction (against the queries only) and
    averages the two. Under ``torch.distributed`` each rank scores its own queries against every
    rank's documents and hard negatives.
    """

    kinds = ("pairs",)

    def __init__(self, scale: float = 20.0, symmetric: bool = False) -> None:
        super().__init__()
        self.scale = float(scale)
        self.symmetric = bool(symmetric)

    @fp32
    def forward(
        self,
        query_emb: torch.Tensor,
        doc_emb: torch.Tensor,
        negatives: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_pairs(query_emb, doc_emb)
        queries, docs = F.normalize(query_emb, dim=-1), F.normalize(doc_emb, dim=-1)
        pairs = gather_pairs(queries, docs, negatives, groups)
        targets = pairs.targets
        loss = F.cross_entropy(pairs.mask(self.scale * queries @ pairs.candidates.T), targets, reduction="sum")
        if self.symmetric:
            backward = F.cross_entropy(pairs.mask(self.scale * docs @ pairs.left.T), targets, reduction="sum")
            loss = (loss + backward) / 2
        return pairs.batch.share(loss)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, symmetric={self.symmetric}"
