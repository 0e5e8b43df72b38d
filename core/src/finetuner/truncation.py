"""Matryoshka truncation: keep the first ``dim`` coordinates of embeddings, then re-normalise.

A model trained with :class:`finetuner.losses.matryoshka.MatryoshkaLoss` front-loads what
matters into the first coordinates, so its embeddings cut to 64 of 384 dimensions stay good.
Kept free of heavy imports (torch is only touched when given a tensor).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from finetuner.errors import OptionError

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def check_dim(dim: object, output_dim: int | None, *, argument: str = "truncate_dim") -> int:
    """``dim`` as an int in ``[1, output_dim]``, or an OptionError naming ``argument`` and that range."""
    valid = "a positive integer" if output_dim is None else f"an integer from 1 to {output_dim}"
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise OptionError(f"{argument} must be {valid}, got {dim!r}")
    if output_dim is not None and dim > output_dim:
        raise OptionError(f"{argument}={dim} is larger than the output dimension {output_dim}; valid: 1 to {output_dim}")
    return int(dim)


def check_matryoshka_dims(dims: Iterable[object], output_dim: int | None = None) -> tuple[int, ...]:
    """``dims`` as a strictly descending tuple of positive ints, each at most ``output_dim`` (when known)."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Iterable):
        raise OptionError(f"matryoshka_dims must be a list of dimensions such as (384, 256, 128, 64), got {dims!r}")
    values = list(dims)
    if not values:
        raise OptionError("matryoshka_dims must name at least one dimension, e.g. (384, 256, 128, 64)")
    checked = tuple(check_dim(d, output_dim, argument="matryoshka_dims") for d in values)
    if any(a <= b for a, b in zip(checked, checked[1:])):
        raise OptionError(f"matryoshka_dims must be strictly descending (largest first), got {list(checked)}")
    return checked


def truncate(embeddings: Array, dim: int, *, normalize: bool = True) -> Array:
    """The first ``dim`` columns of ``[N, output_dim]`` embeddings (numpy or torch), L2-normalised row-wise when ``normalize``."""
    dim = check_dim(dim, embeddings.shape[-1])
    cut = embeddings[..., :dim]
    if not normalize:
        return cut
    if isinstance(cut, np.ndarray):
        norms = np.linalg.norm(cut, axis=-1, keepdims=True)
        return cut / np.maximum(norms, 1e-12).astype(cut.dtype, copy=False)
    import torch.nn.functional as F

    return F.normalize(cut, dim=-1)
