"""bench/bench_negatives.py's own parts: the peer's metrics are finetuner's, the splits hold out their queries."""

from __future__ import annotations

import numpy as np
import pytest

import finetuner
from finetuner.data import PairData, RetrievalData
from tests.e2e.benches import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_negatives")


def test_the_peers_metrics_are_computed_as_finetuner_evaluate_does(bench):
    corpus = {str(i): f"document about topic {i % 5} number {i}" for i in range(30)}
    queries = {f"q{i}": f"question on topic {i}" for i in range(5)}
    qrels = {f"q{i}": {str(j): 1 for j in range(30) if j % 5 == i} for i in range(4)}  # q4 has no judgment
    test = RetrievalData(queries, corpus, qrels)
    model = finetuner.build_model("dummy-text")
    expected = finetuner.evaluate(model, test, metrics=list(bench.METRICS), precision="fp32")

    def embed(items):
        vectors = finetuner.encode(model, items, precision="fp32")
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    actual = bench.ranked_metrics(embed(list(queries.values())), embed(list(corpus.values())), test)
    assert actual == pytest.approx(expected, abs=1e-6)


def test_the_largest_feasible_batch_keeps_documents_distinct(bench):
    data = PairData([f"q{i % 12}" for i in range(40)], [f"d{i % 20}" for i in range(40)])  # 20 distinct documents
    assert bench.feasible_batch(data, 256) == 16
    assert bench.feasible_batch(data, 8) == 8


def test_stsb_retrieval_holds_its_test_queries_out(bench, shared_data, monkeypatch):
    monkeypatch.setattr(bench, "DATA", shared_data)
    train, test, corpus = bench.stsb(quick=True)
    assert set(train.queries).isdisjoint(test.queries) and len(test.queries) > 0
    assert all(doc in test.corpus for judged in test.qrels.values() for doc in judged)
    assert set(train.documents) <= set(corpus)
