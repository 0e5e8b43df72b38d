"""Losses for pairs with a similarity score: CoSENT (ordering only) and cosine MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finetuner.losses.base import fp32
from finetuner.losses.distributed import gather_batch
from finetuner.losses.in_batch import check_pairs


def _pair_cosines(a_emb: torch.Tensor, b_emb: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each pair and its score, gathered over ranks (each rank then computes the global loss)."""
    check_pairs(a_emb, b_emb)
    scores = scores.reshape(-1).to(device=a_emb.device, dtype=torch.float32)
    if scores.shape[0] != a_emb.shape[0]:
        raise ValueError(f"got {scores.shape[0]} scores for {a_emb.shape[0]} pairs")
    cosines, scores = gather_batch(F.cosine_similarity(a_emb, b_emb, dim=-1), scores).tensors
    return cosines, scores


class CoSENTLoss(nn.Module):
    """``log(1 + sum over (i, j) with score_i > score_j of exp(scale * (cos_j - cos_i)))``.

    Only the order of the scores matters, so they need no normalisation.
    """

    kinds = ("scored",)

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = float(scale)

    @fp32
    def forward(self, a_emb: torch.Tensor, b_emb: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cosines, scores = _pair_cosines(a_emb, b_emb, scores)
        differences = self.scale * (cosines[None, :] - cosines[:, None])  # [i, j] = cos_j - cos_i
        wrong_way = differences[scores[:, None] > scores[None, :]]
        return torch.logsumexp(torch.cat([differences.new_zeros(1), wrong_way]), dim=0)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class CosineSimilarityLoss(nn.Module):
    """Mean squared error between each pair's cosine and its score mapped to [0, 1].

    ``score_range=(min, max)`` maps scores linearly (STSb: ``(0, 5)``); give the data's range
    (or the scale's). Without it the scores must already lie in [0, 1].
    """

    kinds = ("scored",)

    def __init__(self, score_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        if score_range is not None:
            low, high = (float(v) for v in score_range)
            if not high > low:
                raise ValueError(f"score_range must be (min, max) with max > min, got {score_range!r}")
            score_range = (low, high)
        self.score_range = score_range

    @fp32
    def forward(self, a_emb: torch.Tensor, b_emb: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cosines, scores = _pair_cosines(a_emb, b_emb, scores)
        if self.score_range is not None:
            low, high = self.score_range
            scores = (scores - low) / (high - low)
        if scores.numel() and not (scores.min() >= -1e-6 and scores.max() <= 1 + 1e-6):
            where = f"the score_range {self.score_range}" if self.score_range else "[0, 1]"
            raise ValueError(
                f"scores lie outside {where}: pass CosineSimilarityLoss(score_range=(min, max)) with the scale of the scores"
            )
        return F.mse_loss(cosines, scores)

    def extra_repr(self) -> str:
        return f"score_range={self.score_range}"
