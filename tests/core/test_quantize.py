"""Quantized embeddings: codes equal to sentence-transformers', calibration, decoding, and search over codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetuner import UnknownNameError
from finetuner.quantize import PRECISIONS, calibrate, dequantize, iter_search, quantize_embeddings, search


def embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def st_quantize(*args: object, **kwargs: object) -> np.ndarray:
    """sentence-transformers' quantize_embeddings (in ``util`` since 5.x, ``quantization`` before)."""
    try:
        from sentence_transformers.util import quantize_embeddings as peer
    except ImportError:
        from sentence_transformers.quantization import quantize_embeddings as peer
    return peer(*args, **kwargs)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise bit differences of packed uint8 codes, bit by bit."""
    bits_a, bits_b = np.unpackbits(a, axis=1), np.unpackbits(b, axis=1)
    return (bits_a[:, None, :] != bits_b[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("dim", [16, 20, 384])
@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_packing_equals_sentence_transformers(precision: str, dim: int) -> None:
    x = embeddings(50, dim)
    ours, theirs = quantize_embeddings(x, precision), st_quantize(x, precision)
    assert ours.dtype == theirs.dtype and ours.shape == (50, (dim + 7) // 8)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_buckets_equal_sentence_transformers(precision: str) -> None:
    sample, x = embeddings(500, 32, seed=1), embeddings(200, 32, seed=2)
    ranges = calibrate(sample)
    ours = quantize_embeddings(x, precision, ranges)
    assert ours.dtype == np.dtype(precision)
    np.testing.assert_array_equal(ours, st_quantize(x, precision, ranges=ranges))
    np.testing.assert_array_equal(ours, st_quantize(x, precision, calibration_embeddings=sample))
    # without ranges both calibrate on the embeddings themselves
    np.testing.assert_array_equal(quantize_embeddings(x, precision), st_quantize(x, precision))


def test_int8_is_uint8_shifted_and_accepts_tensors() -> None:
    x = embeddings(40, 12)
    ranges = calibrate(x)
    uint8 = quantize_embeddings(torch.from_numpy(x), "uint8", ranges)
    np.testing.assert_array_equal(quantize_embeddings(x, "int8", ranges).astype(np.int16) + 128, uint8)
    assert uint8.min() == 0 and uint8.max() == 255  # the sample's own min and max are the ends


def test_calibrate_gives_min_and_max_per_dimension() -> None:
    x = embeddings(30, 6)
    ranges = calibrate(x)
    assert ranges.shape == (2, 6) and ranges.dtype == np.float32
    np.testing.assert_array_equal(ranges, np.stack([x.min(0), x.max(0)]))
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(x[:1])
    with pytest.raises(ValueError, match="finite"):
        calibrate(np.full((3, 6), np.nan, dtype=np.float32))


def test_errors_name_the_argument_and_valid_values() -> None:
    x = embeddings(10, 8)
    with pytest.raises(UnknownNameError, match="precision 'int4'.*Valid: binary, int8, ubinary, uint8"):
        quantize_embeddings(x, "int4")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 8\)"):
        quantize_embeddings(x, "int8", np.zeros((2, 7)))
    with pytest.raises(ValueError, match="min.*max"):
        quantize_embeddings(x, "int8", np.stack([np.ones(8), np.zeros(8)]))
    with pytest.raises(ValueError, match="ranges apply to int8 and uint8 only"):
        quantize_embeddings(x, "binary", calibrate(x))
    with pytest.raises(ValueError, match="float embeddings"):
        quantize_embeddings(quantize_embeddings(x, "uint8"), "uint8")
    with pytest.raises(ValueError, match="2-D"):
        quantize_embeddings(x[0], "binary")


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_dequantize_scalar_is_within_half_a_bucket(precision: str) -> None:
    x = embeddings(100, 16)
    ranges = calibrate(x)
    decoded = dequantize(quantize_embeddings(x, precision, ranges), precision, dim=16, ranges=ranges)
    step = (ranges[1] - ranges[0]) / 255
    assert np.all(np.abs(decoded - x) <= step / 2 + 1e-6)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_dequantize_binary_gives_signs(precision: str) -> None:
    x = embeddings(10, 13)
    np.testing.assert_array_equal(dequantize(quantize_embeddings(x, precision), precision, dim=13), np.where(x > 0, 1, -1))


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_search_ranks_by_hamming_distance(precision: str) -> None:
    dim = 20
    queries, corpus = embeddings(7, dim, seed=3), embeddings(60, dim, seed=4)
    codes = quantize_embeddings(corpus, precision)
    scores, indices = search(queries, codes, 10, precision=precision)
    distance = hamming(quantize_embeddings(queries, "ubinary"), quantize_embeddings(corpus, "ubinary"))
    expected = np.argsort(distance, axis=1, kind="stable")[:, :10]  # ties by corpus position
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, dim - 2 * np.take_along_axis(distance, expected, 1))


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_search_ranks_by_integer_dot_product(precision: str) -> None:
    queries, corpus = embeddings(5, 32, seed=5), embeddings(80, 32, seed=6)
    ranges = calibrate(corpus)
    codes = quantize_embeddings(corpus, precision, ranges)
    scores, indices = search(queries, codes, 8, precision=precision, ranges=ranges)
    signed = quantize_embeddings(queries, "int8", ranges).astype(np.int64)
    dots = signed @ quantize_embeddings(corpus, "int8", ranges).astype(np.int64).T
    expected = np.argsort(-dots, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(dots, expected, 1))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_rescore_reranks_the_top_n_with_float_queries(precision: str) -> None:
    queries, corpus = embeddings(6, 24, seed=7), embeddings(50, 24, seed=8)
    ranges = calibrate(corpus) if precision in ("int8", "uint8") else None
    codes = quantize_embeddings(corpus, precision, ranges)
    _, first = search(queries, codes, 20, precision=precision, ranges=ranges)
    scores, indices = search(queries, codes, 20, precision=precision, ranges=ranges, rescore=5)
    decoded = dequantize(codes, precision, dim=24, ranges=ranges)
    exact = queries @ decoded.T
    # the first 5 are the first stage's top 5 re-ranked by the float query; the rest keep their order
    for q in range(len(queries)):
        top = first[q, :5]
        np.testing.assert_array_equal(indices[q, :5], top[np.argsort(-exact[q, top], kind="stable")])
        np.testing.assert_allclose(scores[q, :5], exact[q, indices[q, :5]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(indices[:, 5:], first[:, 5:])
    # rescoring everything is the float query against the decoded corpus
    _, full = search(queries, codes, 3, precision=precision, ranges=ranges, rescore=50)
    np.testing.assert_array_equal(full, np.argsort(-exact, axis=1, kind="stable")[:, :3])


def test_rescored_int8_search_finds_the_float_neighbours() -> None:
    corpus = embeddings(400, 64, seed=9)
    queries = corpus[:40] + 0.05 * embeddings(40, 64, seed=10)
    for precision, ranges, rescore in (("int8", calibrate(corpus), None), ("binary", None, 50)):
        codes = quantize_embeddings(corpus, precision, ranges)
        _, indices = search(queries, codes, 1, precision=precision, ranges=ranges, rescore=rescore)
        np.testing.assert_array_equal(indices[:, 0], np.arange(40))


def test_iter_search_chunks_excludes_and_per_query_k() -> None:
    corpus = embeddings(30, 16, seed=11)
    codes = quantize_embeddings(corpus, "ubinary")
    chunks = list(iter_search(corpus, codes, np.array([3, 5] * 15), precision="ubinary", exclude=np.arange(30), chunk_size=4))
    assert len(chunks) == 8
    indices = np.concatenate([c[2][:, :3] for c in chunks])
    assert not (indices == np.arange(30)[:, None]).any()
    assert max(c[2].shape[1] for c in chunks) == 5


def test_search_errors() -> None:
    x = embeddings(10, 16)
    codes = quantize_embeddings(x, "int8", calibrate(x))
    with pytest.raises(ValueError, match="ranges="):
        search(x, codes, 3, precision="int8")
    with pytest.raises(ValueError, match=r"corpus must be binary codes of 16-dim embeddings, \[N, 2\]"):
        search(x, codes, 3, precision="binary")
    with pytest.raises(ValueError, match="rescore must be a positive"):
        search(x, codes, 3, precision="int8", ranges=calibrate(x), rescore=0)
    with pytest.raises(UnknownNameError, match="precision"):
        search(x, codes, 3, precision="float16")
