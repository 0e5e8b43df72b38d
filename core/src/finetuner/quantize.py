"""Quantized embeddings: int8/uint8 scalar codes and packed binary codes, and search over them.

=========  ===============  =====================  ==============================================
precision  dtype            bytes per vector       code
=========  ===============  =====================  ==============================================
int8       int8             dim                    bucket of ``[min, max]`` per dimension, - 128
uint8      uint8            dim                    bucket of ``[min, max]`` per dimension
binary     int8             ceil(dim / 8)          ``x > 0`` packed 8 to a byte (``np.packbits``), - 128
ubinary    uint8            ceil(dim / 8)          ``x > 0`` packed 8 to a byte (``np.packbits``)
=========  ===============  =====================  ==============================================

The codes are byte for byte those of sentence-transformers' ``quantize_embeddings`` given
the same ``ranges``. The ranges (``[2, dim]``: each dimension's minimum and maximum) come
from :func:`calibrate` on a representative sample; queries and corpus must share them.

Search (:func:`search`, :func:`iter_search`) quantizes the float32 queries the same way and
ranks by the codes' similarity: for binary codes the dot product of the ±1 vectors, which is
``dim - 2 * hamming distance``; for int8/uint8 the integer dot product of the signed codes.
``rescore=N`` then re-ranks each query's top N by the float32 query against the corpus
codes decoded (bucket centres, or ±1 for binary codes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from finetuner.choices import EMBEDDING_QUANTIZATIONS
from finetuner.errors import OptionError, UnknownNameError

if TYPE_CHECKING:
    import torch

PRECISIONS = EMBEDDING_QUANTIZATIONS
DTYPES = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}
SCALAR = ("int8", "uint8")
_BUCKETS = 255


def check_precision(precision: str, argument: str = "precision") -> str:
    """``precision`` when it is one of :data:`PRECISIONS`, else an error naming ``argument`` and the valid values."""
    if precision not in PRECISIONS:
        raise UnknownNameError(argument, str(precision), PRECISIONS)
    return precision


def check_rescore(rescore: int | None) -> int | None:
    """``rescore`` when it is None or a positive integer, else an OptionError naming it."""
    if rescore is not None and (isinstance(rescore, bool) or not isinstance(rescore, (int, np.integer)) or rescore < 1):
        raise OptionError(f"rescore must be a positive number of candidates to re-rank, got {rescore!r}")
    return None if rescore is None else int(rescore)


def _as_float_matrix(embeddings: Any, argument: str = "embeddings") -> np.ndarray:
    if hasattr(embeddings, "detach"):  # a torch tensor
        embeddings = embeddings.detach().float().cpu().numpy()
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise OptionError(f"{argument} must be a 2-D [N, dim] array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise OptionError(f"{argument} must be float embeddings (before quantization), got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def calibrate(embeddings: Any) -> np.ndarray:
    """The int8/uint8 ranges of a sample of float embeddings: ``[2, dim]`` float32, each dimension's min and max."""
    sample = _as_float_matrix(embeddings)
    if len(sample) < 2:
        raise OptionError(f"calibrate needs a sample of at least 2 embeddings, got {len(sample)}")
    if not np.isfinite(sample).all():
        raise OptionError("calibrate needs finite embeddings; the sample has NaN or inf")
    return np.stack([sample.min(axis=0), sample.max(axis=0)])


def check_ranges(ranges: Any, dim: int) -> np.ndarray:
    """``ranges`` as a ``[2, dim]`` float32 array with finite ``min <= max``, else an OptionError naming ``ranges``."""
    try:
        array = np.asarray(ranges, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"ranges must be a (2, {dim}) array of numbers (min and max per dimension): {exc}") from None
    if array.shape != (2, dim):
        raise OptionError(f"ranges must have shape (2, {dim}) (min and max per dimension, from calibrate), got {array.shape}")
    if not np.isfinite(array).all() or (array[0] > array[1]).any():
        raise OptionError("ranges must be finite with ranges[0] (min) <= ranges[1] (max) in every dimension")
    return array


def _steps(ranges: np.ndarray) -> np.ndarray:
    steps = (ranges[1] - ranges[0]) / _BUCKETS
    return np.where(steps == 0, 1, steps).astype(np.float32)


def quantize_embeddings(embeddings: Any, precision: str, ranges: Any = None) -> np.ndarray:
    """``[N, dim]`` float embeddings (numpy or torch) as codes of ``precision`` (see the module's table).

    int8/uint8 need ``ranges`` (``[2, dim]``, from :func:`calibrate`); without them the ranges
    are calibrated on ``embeddings`` themselves, which makes the codes depend on the batch.
    binary/ubinary take no ranges and return ``[N, ceil(dim / 8)]`` bytes.
    """
    check_precision(precision)
    array = _as_float_matrix(embeddings)
    if precision not in SCALAR:
        if ranges is not None:
            raise OptionError(f"ranges apply to int8 and uint8 only, not to {precision}")
        packed = np.packbits(array > 0, axis=-1)
        return (packed ^ 0x80).view(np.int8) if precision == "binary" else packed
    ranges = calibrate(array) if ranges is None else check_ranges(ranges, array.shape[1])
    buckets = np.clip(np.floor((array - ranges[0]) / _steps(ranges)), 0, _BUCKETS)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def dequantize(codes: np.ndarray, precision: str, *, dim: int, ranges: Any = None) -> np.ndarray:
    """Float32 ``[N, dim]`` vectors the codes stand for: bucket centres (int8/uint8, with ``ranges``) or ±1 (binary)."""
    check_precision(precision)
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != DTYPES[precision]:
        raise OptionError(
            f"codes must be a 2-D {np.dtype(DTYPES[precision])} array of {precision} codes, got {codes.dtype} {codes.shape}"
        )
    if precision not in SCALAR:
        return _signs(codes, precision, dim)
    ranges = check_ranges(ranges, dim)
    buckets = codes.astype(np.float32) + (128 if precision == "int8" else 0)
    return np.where(ranges[1] > ranges[0], ranges[0] + (buckets + 0.5) * _steps(ranges), ranges[0])


def _signs(codes: np.ndarray, precision: str, dim: int) -> np.ndarray:
    """Packed binary codes as ``[N, dim]`` float32 ±1."""
    packed = codes.view(np.uint8) ^ np.uint8(0x80 if precision == "binary" else 0)
    return np.unpackbits(packed, axis=-1, count=dim).astype(np.float32) * 2 - 1


def _search_vectors(codes: np.ndarray, precision: str, dim: int) -> np.ndarray:
    """Float32 vectors whose inner products are the codes' similarities (±1 bits; signed integer codes).

    Float32 holds those sums exactly while they stay below 2**24 (every dim up to 1024).
    """
    if precision in SCALAR:
        return codes.astype(np.float32) - (128 if precision == "uint8" else 0)
    return _signs(codes, precision, dim)


def iter_search(
    queries: Any,
    corpus: np.ndarray,
    k: int | np.ndarray,
    *,
    precision: str,
    ranges: Any = None,
    rescore: int | None = None,
    exclude: np.ndarray | None = None,
    chunk_size: int | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """:func:`finetuner.evaluation.retrieval.iter_top_k` over quantized codes: ``(query_slice, scores, indices)`` per chunk.

    ``queries`` are float32 ``[Q, dim]`` embeddings, quantized here with ``ranges`` (which
    int8/uint8 need: the corpus's); ``corpus`` holds codes of ``precision``. The scores are the
    codes' similarities; with ``rescore=N`` each query's top N (the first stage fetches
    ``max(k, N)``) are re-ranked by the float32 query against the decoded corpus codes, and
    their scores are those float products.
    """
    from finetuner.evaluation.retrieval import SCORE_BUDGET, iter_top_k

    check_precision(precision)
    queries = _as_float_matrix(queries, "queries")
    dim = queries.shape[1]
    if precision in SCALAR and ranges is None:
        raise OptionError(f"{precision} search needs the corpus's ranges= (from calibrate)")
    rescore = check_rescore(rescore)
    corpus = np.asarray(corpus)
    width = (dim + 7) // 8 if precision not in SCALAR else dim
    if corpus.ndim != 2 or corpus.shape[1] != width or corpus.dtype != DTYPES[precision]:
        raise OptionError(
            f"corpus must be {precision} codes of {dim}-dim embeddings, [N, {width}], got {corpus.dtype} {corpus.shape}"
        )
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(queries),))
    first_k = np.maximum(ks, rescore or 0)
    if chunk_size is None and rescore:
        chunk_size = max(1, SCORE_BUDGET // max(len(corpus), rescore * dim))
    stages = iter_top_k(
        _search_vectors(quantize_embeddings(queries, precision, ranges), precision, dim),
        _search_vectors(corpus, precision, dim),
        first_k,
        exclude=exclude,
        chunk_size=chunk_size,
        device=device,
    )
    for rows, scores, indices in stages:
        cut = min(int(ks[rows].max()), indices.shape[1])
        if rescore:
            top = indices[:, :rescore]
            decoded = dequantize(corpus[top.reshape(-1)], precision, dim=dim, ranges=ranges).reshape(*top.shape, dim)
            exact = np.einsum("qd,qnd->qn", queries[rows], decoded)
            order = np.argsort(-exact, axis=1, kind="stable")
            scores = np.concatenate([np.take_along_axis(exact, order, 1), scores[:, rescore:]], axis=1)
            indices = np.concatenate([np.take_along_axis(top, order, 1), indices[:, rescore:]], axis=1)
        yield rows, scores[:, :cut].astype(np.float32), indices[:, :cut]


def search(
    queries: Any, corpus: np.ndarray, k: int, *, precision: str, ranges: Any = None, rescore: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` corpus codes for every float32 query, ``(scores, indices)``; see :func:`iter_search`."""
    parts = list(iter_search(queries, corpus, k, precision=precision, ranges=ranges, rescore=rescore))
    if not parts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
