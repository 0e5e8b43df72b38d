"""Ranking metrics against ranx, MAP@R and R-precision against pytorch-metric-learning, correlations against scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from finetuner.evaluation.metrics import (
    AT_K,
    Judgments,
    binary_ideal,
    map_at_r,
    mrr_at_k,
    ndcg_at_k,
    parse_at_k,
    pearson,
    r_precision,
    rankdata,
    ranking_metrics,
    spearman,
)
from finetuner.evaluation.retrieval import top_k

KS = (1, 3, 5, 10, 25)


def _random_run(seed: int, num_queries: int = 40, num_docs: int = 60, depth: int = 30):
    """Graded qrels and a run with distinct scores (so ranx's order is unambiguous)."""
    rng = np.random.default_rng(seed)
    qrels, run, per_query, ranked = {}, {}, [], []
    for q in range(num_queries):
        judged = rng.choice(num_docs, size=rng.integers(1, 12), replace=False)
        grades = rng.integers(0, 4, size=len(judged))
        grades[0] = max(grades[0], 1)  # at least one relevant document per query
        qrels[f"q{q}"] = {f"d{d}": int(g) for d, g in zip(judged, grades, strict=True)}
        per_query.append(dict(zip(judged.tolist(), grades.tolist(), strict=True)))
        retrieved = rng.choice(num_docs, size=depth, replace=False)
        scores = rng.permutation(depth) + rng.random()  # distinct
        run[f"q{q}"] = {f"d{d}": float(s) for d, s in zip(retrieved, scores, strict=True)}
        ranked.append(retrieved[np.argsort(-scores, kind="stable")])
    return qrels, run, Judgments(per_query, num_docs), np.array(ranked)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_ranx(seed):
    ranx = pytest.importorskip("ranx")
    qrels, run, judgments, ranked = _random_run(seed)
    queries = np.arange(len(ranked))
    names = [f"{family}@{k}" for family in AT_K for k in KS] + ["r_precision"]
    ours = ranking_metrics(judgments.relevance(queries, ranked), judgments.num_relevant, judgments.ideal(queries, max(KS)), names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety chatter
        expected = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), [n.replace("r_precision", "r-precision") for n in names])
    for name in names:
        assert ours[name].mean() == pytest.approx(expected[name.replace("r_precision", "r-precision")], abs=1e-12), name


def test_graded_ndcg_uses_linear_gain_and_ideal_order():
    # Ranked grades 0, 2, 3 against judged grades {3, 2, 1}: linear gain as in ranx's ndcg (Järvelin).
    judgments = Judgments([{0: 1, 1: 2, 2: 3, 3: 0}], num_documents=5)
    relevance = judgments.relevance(np.array([0]), np.array([[4, 1, 2]]))
    assert relevance.tolist() == [[0.0, 2.0, 3.0]]
    dcg = 2 / np.log2(3) + 3 / np.log2(4)
    idcg = 3 + 2 / np.log2(3) + 1 / np.log2(4)
    assert ndcg_at_k(relevance, judgments.ideal(np.array([0]), 3), 3)[0] == pytest.approx(dcg / idcg)
    assert judgments.num_relevant.tolist() == [3]  # grade 0 is not relevant


def test_ties_are_broken_by_corpus_position():
    # Documents 0..3 score the same; the relevant one is document 2, so it ranks third.
    corpus = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]], dtype=np.float32)
    _, ranked = top_k(np.array([[1.0, 0.0]], dtype=np.float32), corpus, 5)
    assert ranked.tolist() == [[0, 1, 2, 3, 4]]
    judgments = Judgments([{2: 1}], num_documents=5)
    relevance = judgments.relevance(np.array([0]), ranked)
    assert mrr_at_k(relevance, 5)[0] == pytest.approx(1 / 3)
    assert mrr_at_k(relevance, 2)[0] == 0.0


def test_metrics_with_no_relevant_document_are_zero():
    relevance = np.zeros((1, 3))
    values = ranking_metrics(relevance, np.array([0]), np.zeros((1, 3)), ["recall@3", "map@3", "ndcg@3", "mrr@3", "r_precision"])
    assert all(v.tolist() == [0.0] for v in values.values())


def test_parse_at_k_rejects_malformed_names():
    assert parse_at_k("ndcg@10") == ("ndcg", 10)
    for bad in ("ndcg", "ndcg@0", "ndcg@x", "foo@3"):
        with pytest.raises(ValueError):
            parse_at_k(bad)


def _pml_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    import torch
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
        device=torch.device("cpu"),
    )
    return calculator.get_accuracy(embeddings, labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_map_at_r_and_r_precision_match_pytorch_metric_learning(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, size=300)
    labels[:3] = 99, 98, 97  # lone labels: no other item is relevant; both libraries leave them out
    embeddings = rng.normal(size=(300, 16)).astype(np.float32) + labels[:, None] % 5 * 0.3
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    num_relevant = np.array([(labels == label).sum() - 1 for label in labels])
    keep = np.flatnonzero(num_relevant > 0)
    _, ranked = top_k(embeddings[keep], embeddings, int(num_relevant.max()), exclude=keep, chunk_size=37)
    relevance = (labels[ranked] == labels[keep][:, None]).astype(float)
    expected = _pml_accuracy(embeddings, labels)
    assert map_at_r(relevance, num_relevant[keep]).mean() == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-6)
    assert r_precision(relevance, num_relevant[keep]).mean() == pytest.approx(expected["r_precision"], abs=1e-6)


def test_map_at_r_by_hand():
    # R = 3; relevant at ranks 1 and 3 within R, the third one at rank 4 does not count.
    relevance = np.array([[1.0, 0.0, 1.0, 1.0]])
    assert map_at_r(relevance, np.array([3]))[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert r_precision(relevance, np.array([3]))[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 5 results"):
        map_at_r(relevance, np.array([5]))


def test_binary_ideal():
    assert binary_ideal(np.array([0, 2, 5]), 3).tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_judgments_reject_documents_out_of_range():
    with pytest.raises(ValueError, match="document 7"):
        Judgments([{7: 1}], num_documents=5)


def test_correlations_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, size=200).astype(float)  # many ties
    y = x + rng.normal(size=200)
    y[::7] = 1.0
    assert rankdata(x) == pytest.approx(stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def test_correlation_of_a_constant_is_nan():
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
