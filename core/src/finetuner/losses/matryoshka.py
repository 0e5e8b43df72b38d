"""Matryoshka representation learning: one loss over several truncations of the same embeddings."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from finetuner.errors import OptionError
from finetuner.losses.base import Loss, fp32
from finetuner.truncation import check_matryoshka_dims, truncate


def _as_loss(loss: Loss | nn.Module) -> Loss:
    """A :class:`Loss` as is; one of this package's loss modules (a single ``kinds`` entry) wrapped for its kind."""
    if isinstance(loss, Loss):
        return loss
    kinds = getattr(loss, "kinds", ())
    if isinstance(loss, nn.Module) and len(kinds) == 1:
        return Loss(loss, name=type(loss).__name__, kind=kinds[0])
    raise TypeError(
        "MatryoshkaLoss wraps a finetuner Loss (what finetuner.losses.build_loss returns) or one of its "
        f"pairs/scored loss modules, got {type(loss).__name__}"
    )


def _check_weights(weights: Iterable[float] | None, count: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * count
    values = tuple(float(w) for w in weights)
    if len(values) != count or not all(math.isfinite(w) and w >= 0 for w in values) or not any(values):
        raise OptionError(
            f"matryoshka_weights must be {count} non-negative numbers (one per matryoshka_dims entry, not all 0), got {list(values)}"
        )
    return values


class MatryoshkaLoss(Loss):
    """``sum_i weight_i * loss(embeddings cut to dims_i)``: embeddings that stay good when truncated.

    ``loss`` is any :class:`Loss` (in-batch, scored, CLIP or a metric loss on labeled data)
    and is called as usual on the first ``d`` coordinates of every side for each ``d`` in
    ``matryoshka_dims`` (strictly descending, each at most the model's ``output_dim``).
    ``normalize`` re-normalises each truncation, as the model's own output is; the built-in
    losses use cosines, so for them it changes nothing. ``matryoshka_weights`` default to 1.
    """

    def __init__(
        self,
        loss: Loss | nn.Module,
        matryoshka_dims: Iterable[int],
        matryoshka_weights: Iterable[float] | None = None,
        *,
        output_dim: int | None = None,
        normalize: bool = True,
    ) -> None:
        inner = _as_loss(loss)
        dims = check_matryoshka_dims(matryoshka_dims, output_dim)
        super().__init__(inner, name=f"MatryoshkaLoss({inner.name}, matryoshka_dims={list(dims)})", kind=inner.kind)
        self.lr_multiplier = inner.lr_multiplier
        self.dims = dims
        self.weights = _check_weights(matryoshka_weights, len(self.dims))
        self.normalize = bool(normalize)

    @fp32
    def forward(self, left: torch.Tensor, right: torch.Tensor | None = None, **inputs: torch.Tensor | None) -> torch.Tensor:
        """The inner loss's weighted sum over the truncations; ``inputs`` are those of :meth:`Loss.forward`."""
        check_matryoshka_dims(self.dims, left.shape[-1])
        negatives = inputs.pop("negatives", None)
        total = left.new_zeros(())
        for dim, weight in zip(self.dims, self.weights, strict=True):
            cut_right = None if right is None else truncate(right, dim, normalize=self.normalize)
            cut_negatives = None if negatives is None else truncate(negatives, dim, normalize=self.normalize)
            value = self.module(truncate(left, dim, normalize=self.normalize), cut_right, negatives=cut_negatives, **inputs)
            total = total + weight * value
        return total

    def extra_repr(self) -> str:
        return f"matryoshka_dims={self.dims}, matryoshka_weights={self.weights}, normalize={self.normalize}"
