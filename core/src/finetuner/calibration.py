"""A model's compact embeddings: calibrate() its int8/uint8 ranges, and encode's truncate and quantize step.

The ranges are kept on the model (``model.quantization_ranges``, by dimension) and in its
artifact's JSON, so the corpus and the queries, encoded apart, share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from finetuner.errors import OptionError
from finetuner.quantize import SCALAR, check_precision, check_ranges, quantize_embeddings
from finetuner.quantize import calibrate as ranges_of
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
    stored = model.quantization_ranges
    if dim not in stored:
        have = f" (it has ranges for {', '.join(map(str, sorted(stored, reverse=True)))} dims)" if stored else ""
        dims, flag = (f", dims=[{dim}]", f" --dims {dim}") if dim != model.output_dim else ("", "")
        raise OptionError(
            f"quantize={precision!r} needs the model's ranges at {dim} dims{have}: calibrate it on a sample first, "
            f"finetuner.calibrate(model, items{dims}) or `finetuner calibrate MODEL SAMPLE{flag}`"
        )
    return stored[dim]


def compactor(model: Any, truncate_dim: int | None, quantize: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """What ``encode(truncate_dim=, quantize=)`` does to the float32 embeddings, its options checked now (before encoding).

    Truncation keeps the first ``truncate_dim`` dimensions, re-normalised when the model
    normalises; quantization uses the model's ranges at that dimension (int8/uint8).
    """
    dim = model.output_dim if truncate_dim is None else check_dim(truncate_dim, model.output_dim)
    if quantize is not None:
        ranges = ranges_for(model, dim, check_precision(quantize, "quantize"))

    def compact(embeddings: np.ndarray) -> np.ndarray:
        if truncate_dim is not None:
            embeddings = truncate(embeddings, dim, normalize=model.normalize)
        return embeddings if quantize is None else quantize_embeddings(embeddings, quantize, ranges)

    return compact


def ranges_record(ranges: dict[int, np.ndarray]) -> dict[str, list[list[float]]]:
    """The ranges as JSON: ``{"<dim>": [[min, ...], [max, ...]]}`` (each float32 value exactly)."""
    return {str(dim): np.asarray(value, dtype=np.float32).tolist() for dim, value in ranges.items()}


def read_ranges(record: dict[str, Any], output_dim: int) -> dict[int, np.ndarray]:
    """:func:`ranges_record`'s JSON back as ``{dim: [2, dim] float32 array}``; an OptionError names a bad entry."""
    ranges = {}
    for key, value in record.items():
        dim = check_dim(int(key) if key.isdigit() else key, output_dim, argument="quantization_ranges dimension")
        ranges[dim] = check_ranges(value, dim)
    return ranges
