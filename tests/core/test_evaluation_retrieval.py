"""Chunked exact top-k search equals a brute-force stable sort, whatever the chunk size."""

from __future__ import annotations

import numpy as np
import pytest

from finetuner.evaluation import retrieval
from finetuner.evaluation.retrieval import default_chunk_size, iter_top_k, top_k


def _integer_vectors(seed: int, n: int, dim: int) -> np.ndarray:
    """Small integers: every dot product is exact in float32 and many are tied, so tie order is tested too."""
    return np.random.default_rng(seed).integers(-2, 3, size=(n, dim)).astype(np.float32)


def _brute_force(queries: np.ndarray, corpus: np.ndarray, k: int, exclude: np.ndarray | None = None):
    scores = queries.astype(np.int64) @ corpus.T.astype(np.int64)
    scores = scores.astype(np.float64)
    if exclude is not None:
        scores[np.arange(len(queries)), exclude] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_chunked_top_k_equals_brute_force(chunk_size):
    corpus = _integer_vectors(0, 500, 6)
    queries = _integer_vectors(1, 90, 6)
    scores, indices = top_k(queries, corpus, 15, chunk_size=chunk_size)
    expected_scores, expected_indices = _brute_force(queries, corpus, 15)
    assert indices.tolist() == expected_indices.tolist()
    assert scores == pytest.approx(expected_scores)


@pytest.mark.parametrize("chunk_size", [3, 50])
def test_excluding_each_query_itself(chunk_size):
    corpus = _integer_vectors(2, 300, 5)
    _, indices = top_k(corpus, corpus, 299, exclude=np.arange(300), chunk_size=chunk_size)
    _, expected = _brute_force(corpus, corpus, 299, exclude=np.arange(300))
    assert indices.tolist() == expected.tolist()
    assert not (indices == np.arange(300)[:, None]).any()


def test_twenty_thousand_items_with_small_chunks():
    corpus = _integer_vectors(3, 20_000, 32)
    picked = np.random.default_rng(4).choice(20_000, size=150, replace=False)
    scores, indices = top_k(corpus[picked], corpus, 20, exclude=picked, chunk_size=16)
    expected_scores, expected_indices = _brute_force(corpus[picked], corpus, 20, exclude=picked)
    assert indices.tolist() == expected_indices.tolist()
    assert scores == pytest.approx(expected_scores)


def test_float_vectors_match_full_matrix_scores():
    rng = np.random.default_rng(5)
    corpus = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(40, 32)).astype(np.float32)
    scores, indices = top_k(queries, corpus, 10, chunk_size=9)
    full = queries.astype(np.float64) @ corpus.T.astype(np.float64)
    assert np.take_along_axis(full, indices, axis=1) == pytest.approx(scores, abs=1e-4)
    assert scores == pytest.approx(-np.sort(-full, axis=1)[:, :10], abs=1e-4)


def test_chunks_respect_the_memory_budget(monkeypatch):
    assert default_chunk_size(100_000) * 100_000 <= retrieval.SCORE_BUDGET  # a 100k index: a few hundred queries at a time
    monkeypatch.setattr(retrieval, "SCORE_BUDGET", 1000)
    corpus = _integer_vectors(6, 100, 4)
    sizes = [rows.stop - rows.start for rows, _, _ in iter_top_k(corpus, corpus, 3)]
    assert max(sizes) * len(corpus) <= 1000 and sum(sizes) == 100


def test_per_query_k_and_cut_to_the_reachable_corpus():
    corpus = _integer_vectors(7, 6, 3)
    chunks = list(iter_top_k(corpus, corpus, np.array([1, 2, 9, 1, 1, 1]), exclude=np.arange(6), chunk_size=3))
    assert [c[2].shape for c in chunks] == [(3, 5), (3, 1)]


def test_bad_arguments_are_named():
    corpus = _integer_vectors(8, 5, 3)
    with pytest.raises(ValueError, match="same width"):
        top_k(corpus, corpus[:, :2], 2)
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k(corpus, corpus, 0)
    with pytest.raises(ValueError, match="exclude"):
        top_k(corpus, corpus, 2, exclude=np.arange(3))
