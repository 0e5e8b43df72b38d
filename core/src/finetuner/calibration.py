"""calibrate(): the int8/uint8 quantization ranges of a model, from a sample of items, kept with the model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from finetuner.quantize import SCALAR, calibrate as ranges_of
from finetuner.truncation import check_dim, truncate


def calibrate(model: Any, items: Sequence[Any], *, dims: Iterable[int] = (), **options: Any) -> Any:
    """Store in ``model.quantization_ranges`` the ranges of ``items``' embeddings; returns the model.

    Ranges are kept per dimension: the output dimension, each of ``model.matryoshka_dims``
    and each of ``dims`` (truncations, re-normalised as ``encode(truncate_dim=)`` gives them).
    ``items`` should look like what will be encoded (a few hundred documents of the corpus;
    for a two-tower model, texts and images both). ``options`` go to :func:`finetuner.encode`.
    :func:`finetuner.save` writes the ranges into the artifact and :func:`finetuner.load` restores them.
    """
    from finetuner.encoding import encode

    wanted = {model.output_dim, *(model.matryoshka_dims or ()), *(check_dim(d, model.output_dim) for d in dims)}
    embeddings = encode(model, items, **options)
    model.quantization_ranges = {
        dim: ranges_of(truncate(embeddings, dim, normalize=model.normalize)) for dim in sorted(wanted, reverse=True)
    }
    return model


def ranges_for(model: Any, dim: int, precision: str) -> np.ndarray | None:
    """The model's stored ranges at ``dim`` for ``precision`` (None for binary codes), or an error saying how to get them."""
    if precision not in SCALAR:
        return None
    stored = getattr(model, "quantization_ranges", None) or {}
    if dim not in stored:
        have = f" (it has ranges for {', '.join(map(str, sorted(stored, reverse=True)))} dims)" if stored else ""
        raise ValueError(
            f"quantize={precision!r} needs the model's ranges at {dim} dims{have}: calibrate it on a sample first, "
            f"finetuner.calibrate(model, items, dims=[{dim}]) or `finetuner calibrate`"
        )
    return stored[dim]
