"""Retrieval and similarity metrics, per query, in plain numpy.

A ranking is given as a relevance matrix ``relevance[q, i]``: the relevance grade of the
``i``-th result of query ``q`` (0 when not relevant), with ``num_relevant[q]`` the number of
relevant documents the query has in all (retrieved or not). Definitions follow ranx
(and trec_eval): a grade of 1 or more is relevant; precision@k divides by k; MAP@k divides
by all relevant documents; nDCG uses the linear gain ``grade / log2(rank + 1)`` (Järvelin &
Kekäläinen). R-precision and MAP@R follow Musgrave et al., "A Metric Learning Reality Check".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

AT_K = ("precision", "recall", "hit_rate", "mrr", "map", "ndcg")
AT_R = ("r_precision", "map@r")
CORRELATIONS = ("pearson", "spearman")


def _hits(relevance: np.ndarray, k: int) -> np.ndarray:
    return (relevance[:, :k] > 0).astype(np.float64)


def precision_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """Relevant results among the first k, divided by k."""
    return _hits(relevance, k).sum(axis=1) / k


def recall_at_k(relevance: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    """Relevant results among the first k, divided by the query's relevant documents (0 when none)."""
    return _safe_divide(_hits(relevance, k).sum(axis=1), num_relevant)


def hit_rate_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """1 when a relevant result is among the first k, else 0."""
    return _hits(relevance, k).max(axis=1, initial=0.0)


def mrr_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first relevant result within the first k (0 when none)."""
    hits = _hits(relevance, k)
    first = hits.argmax(axis=1)
    return np.where(hits.max(axis=1, initial=0.0) > 0, 1.0 / (first + 1), 0.0)


def map_at_k(relevance: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision over the first k: sum of precision@i at each relevant rank i, divided by all relevant."""
    hits = _hits(relevance, k)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return _safe_divide((precision * hits).sum(axis=1), num_relevant)


def ndcg_at_k(relevance: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """DCG of the first k results over the DCG of the ideal ranking (``ideal``: grades sorted descending)."""
    dcg = _dcg(np.where(relevance[:, :k] > 0, relevance[:, :k], 0.0))
    return _safe_divide(dcg, _dcg(ideal[:, :k]))


def _dcg(gains: np.ndarray) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
    return (gains.astype(np.float64) * discounts).sum(axis=1)


def _within_r(relevance: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    if relevance.shape[1] < num_relevant.max(initial=0):
        raise ValueError(f"R-based metrics need at least {int(num_relevant.max())} results per query, got {relevance.shape[1]}")
    mask = np.arange(relevance.shape[1]) < num_relevant[:, None]
    return ((relevance > 0) & mask).astype(np.float64)


def r_precision(relevance: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """Relevant results among the first R, divided by R (R: the query's relevant documents)."""
    return _safe_divide(_within_r(relevance, num_relevant).sum(axis=1), num_relevant)


def map_at_r(relevance: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """MAP@R: the sum of precision@i at each relevant rank i <= R, divided by R."""
    hits = _within_r(relevance, num_relevant)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return _safe_divide((precision * hits).sum(axis=1), num_relevant)


_AT_K_FUNCTIONS = {
    "precision": lambda relevance, num_relevant, ideal, k: precision_at_k(relevance, k),
    "recall": lambda relevance, num_relevant, ideal, k: recall_at_k(relevance, num_relevant, k),
    "hit_rate": lambda relevance, num_relevant, ideal, k: hit_rate_at_k(relevance, k),
    "mrr": lambda relevance, num_relevant, ideal, k: mrr_at_k(relevance, k),
    "map": lambda relevance, num_relevant, ideal, k: map_at_k(relevance, num_relevant, k),
    "ndcg": lambda relevance, num_relevant, ideal, k: ndcg_at_k(relevance, ideal, k),
}


def ranking_metrics(
    relevance: np.ndarray, num_relevant: np.ndarray, ideal: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-query values of the named metrics (``"ndcg@10"``, ``"r_precision"``, ``"map@r"``, ...)."""
    num_relevant = np.asarray(num_relevant, dtype=np.float64)
    out = {}
    for name in names:
        if name == "r_precision":
            out[name] = r_precision(relevance, num_relevant)
        elif name == "map@r":
            out[name] = map_at_r(relevance, num_relevant)
        else:
            family, k = parse_at_k(name)
            out[name] = _AT_K_FUNCTIONS[family](relevance, num_relevant, ideal, k)
    return out


def parse_at_k(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ValueError for anything else."""
    family, at, k = name.partition("@")
    if family not in AT_K or not at or not k.isdigit() or int(k) < 1:
        raise ValueError(f"{name!r} is not a metric at k (one of {', '.join(AT_K)} followed by @k, k >= 1)")
    return family, int(k)


def k_of(name: str) -> int | None:
    """The k of a metric name (``"t2i/recall@10"`` -> 10); None for one without (``"map@r"``, ``"spearman"``)."""
    _, at, k = name.rpartition("/")[2].partition("@")
    return int(k) if at and k.isdigit() else None


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


class Judgments:
    """Graded relevance of (query, document) pairs by integer position, stored sparsely.

    ``per_query[q]`` maps document positions to grades; grades below 1 are not relevant and
    are dropped, as in ranx's default ``rel_lvl=1``.
    """

    def __init__(self, per_query: Sequence[Mapping[int, float]], num_documents: int) -> None:
        self.num_documents = num_documents
        keys, grades, counts, ideal = [], [], [], []
        for q, judged in enumerate(per_query):
            relevant = {int(d): float(g) for d, g in judged.items() if g >= 1}
            for d in relevant:
                if not 0 <= d < num_documents:
                    raise ValueError(f"query {q} judges document {d}, outside 0..{num_documents - 1}")
            keys.extend(q * num_documents + d for d in relevant)
            grades.extend(relevant.values())
            counts.append(len(relevant))
            ideal.append(sorted(relevant.values(), reverse=True))
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.grades = np.asarray(grades, dtype=np.float64)[order]
        self.num_relevant = np.asarray(counts, dtype=np.int64)
        self._ideal = ideal

    def relevance(self, queries: np.ndarray, ranked: np.ndarray) -> np.ndarray:
        """Grades of ``ranked[i, j]`` (document positions) for query ``queries[i]``; 0 when unjudged."""
        wanted = np.asarray(queries, dtype=np.int64)[:, None] * self.num_documents + ranked
        if not len(self.keys):
            return np.zeros(wanted.shape)
        pos = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where(self.keys[pos] == wanted, self.grades[pos], 0.0)

    def ideal(self, queries: np.ndarray, width: int) -> np.ndarray:
        """The best possible grades per query, sorted descending and cut or zero-padded to ``width``."""
        out = np.zeros((len(queries), width))
        for row, q in enumerate(queries):
            best = self._ideal[q][:width]
            out[row, : len(best)] = best
        return out


def binary_ideal(num_relevant: np.ndarray, width: int) -> np.ndarray:
    """The ideal grades for binary relevance: ones for the first ``num_relevant`` ranks."""
    return (np.arange(width) < np.asarray(num_relevant)[:, None]).astype(np.float64)


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the average of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks."""
    return pearson(rankdata(x), rankdata(y))
