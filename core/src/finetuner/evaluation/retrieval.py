"""Exact top-k search by inner product (cosine on L2-normalised vectors), chunk by chunk.

Scores are computed for a chunk of queries against the whole corpus at a time, so memory
is O(chunk_size x corpus size), never the full query x corpus matrix. Ties are broken by
corpus position (as a stable sort on -score would), so results do not depend on the chunk
size or on ``torch.topk``'s internal order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Scores held at once per chunk: 2**25 floats (128 MiB), e.g. 335 queries against a 100,000-item corpus.
SCORE_BUDGET = 1 << 25


def default_chunk_size(num_corpus: int) -> int:
    """The number of queries per chunk that keeps one chunk's scores within SCORE_BUDGET."""
    return max(1, SCORE_BUDGET // max(1, num_corpus))


def iter_top_k(
    queries: np.ndarray | torch.Tensor,
    corpus: np.ndarray | torch.Tensor,
    k: int | np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    chunk_size: int | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(query_slice, scores, indices)`` per chunk of queries, best first.

    ``k`` is one number or one per query (a chunk returns as many columns as its largest k);
    it is cut to the number of corpus items a query can reach. ``exclude[i]`` is a corpus
    position query ``i`` must not retrieve (itself, when queries are the corpus), or -1.
    """
    queries_t = torch.as_tensor(queries, dtype=torch.float32)
    corpus_t = torch.as_tensor(corpus, dtype=torch.float32).to(device)
    if queries_t.ndim != 2 or corpus_t.ndim != 2 or queries_t.shape[1] != corpus_t.shape[1]:
        raise ValueError(f"queries {tuple(queries_t.shape)} and corpus {tuple(corpus_t.shape)} must be 2-D with the same width")
    num_queries, num_corpus = len(queries_t), len(corpus_t)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (num_queries,))
    if (ks < 1).any():
        raise ValueError(f"k must be at least 1, got {int(ks.min())}")
    if exclude is not None and len(exclude) != num_queries:
        raise ValueError(f"exclude has {len(exclude)} entries for {num_queries} queries")
    reachable = num_corpus - (1 if exclude is not None else 0)
    chunk_size = chunk_size or default_chunk_size(num_corpus)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    for start in range(0, num_queries, chunk_size):
        rows = slice(start, min(start + chunk_size, num_queries))
        width = int(min(ks[rows].max(), reachable))
        if width < 1:
            yield rows, np.zeros((rows.stop - start, 0), np.float32), np.zeros((rows.stop - start, 0), np.int64)
            continue
        scores = queries_t[rows].to(device) @ corpus_t.T
        if exclude is not None:
            own = torch.as_tensor(np.asarray(exclude[rows], dtype=np.int64), device=scores.device)
            hit = torch.nonzero(own >= 0).squeeze(1)
            scores[hit, own[hit]] = -torch.inf
        values, indices = _top_k_by_position(scores, width)
        yield rows, values.cpu().numpy(), indices.cpu().numpy()


def top_k(
    queries: np.ndarray | torch.Tensor,
    corpus: np.ndarray | torch.Tensor,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    chunk_size: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` corpus items for every query: ``(scores, indices)``, each ``[num_queries, k]``."""
    parts = list(iter_top_k(queries, corpus, k, exclude=exclude, chunk_size=chunk_size, device=device))
    if not parts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def _top_k_by_position(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk with ties ordered, and cut at the k-th place, by ascending position."""
    values, indices = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    # Where the k-th score ties with the next one, which tied items made the cut was arbitrary: sort those rows fully.
    cut = torch.nonzero(values[:, k] == values[:, k - 1]).squeeze(1).tolist() if values.shape[1] > k else []
    values, indices = values[:, :k], indices[:, :k]
    by_position = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, by_position), indices.gather(1, by_position)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, indices = values.gather(1, by_score), indices.gather(1, by_score)
    for row in cut:
        order = torch.sort(scores[row], descending=True, stable=True).indices[:k]
        values[row], indices[row] = scores[row, order], order
    return values, indices
