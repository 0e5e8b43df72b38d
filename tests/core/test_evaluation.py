"""evaluate() on every data kind with tiny models, checked against ranx / pytorch-metric-learning / scipy; reports; the CLI."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import finetuner
from finetuner import DataError, EmbeddingModel, Tower, UnknownNameError
from finetuner.data.types import LabeledData, PairData, RetrievalData, ScoredData
from finetuner.evaluation import evaluate
from finetuner.report.metrics import compare, render

DIM = 32


def char_bag(text: str) -> np.ndarray:
    counts = np.zeros(DIM, dtype=np.float32)
    for ch in text:
        counts[ord(ch) % DIM] += 1
    return counts


WEIGHTS = np.random.default_rng(42).uniform(0.5, 1.5, size=DIM).astype(np.float32)  # makes tied cosines unlikely


class CharTower(Tower):
    """Text tower: a bag of characters hashed into DIM buckets, times a learnable per-bucket scale."""

    modality = "text"
    output_dim = DIM

    def __init__(self, weights: np.ndarray | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(DIM) if weights is None else torch.as_tensor(weights))

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise DataError(f"item {i} is not a string")
        return {"counts": torch.from_numpy(np.stack([char_bag(t) for t in items]))}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return features["counts"] * self.scale

    def item_cost(self, item: Any) -> int:
        return len(item)


class VectorTower(Tower):
    """Image tower: each "image" is already a DIM-vector."""

    modality = "image"
    output_dim = DIM

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(DIM))

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"pixels": torch.as_tensor(np.stack([np.asarray(x, dtype=np.float32) for x in items]))}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return features["pixels"] * self.scale


class LookupTower(Tower):
    """Items are row numbers of a fixed embedding table."""

    modality = "text"

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.output_dim = table.shape[1]
        self.table = nn.Parameter(torch.as_tensor(table))

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"ids": torch.as_tensor(list(items), dtype=torch.long)}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.table[features["ids"]]


def text_model(weights: np.ndarray | None = None) -> EmbeddingModel:
    return EmbeddingModel({"text": CharTower(weights)})


def random_texts(rng: np.random.Generator, n: int, length: int = 14) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789 "))
    return ["".join(rng.choice(letters, size=length)) for _ in range(n)]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def ranx_evaluate(
    qrels: dict, scores: np.ndarray, query_ids: list[str], doc_ids: list[str], names: list[str]
) -> dict[str, float]:
    ranx = pytest.importorskip("ranx")
    run = {q: {d: float(s) for d, s in zip(doc_ids, row, strict=True)} for q, row in zip(query_ids, scores, strict=True)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), names)


NAMES = [f"{f}@{k}" for f in ("precision", "recall", "hit_rate", "mrr", "map", "ndcg") for k in (1, 3, 10)]


def test_retrieval_data_matches_ranx():
    rng = np.random.default_rng(0)
    corpus = dict(zip([f"d{i}" for i in range(80)], random_texts(rng, 80), strict=True))
    queries = dict(zip([f"q{i}" for i in range(30)], random_texts(rng, 30), strict=True))
    qrels = {}
    for q in list(queries)[:25]:  # q25..q29 have no judgments: left out
        judged = rng.choice(80, size=rng.integers(1, 6), replace=False)
        qrels[q] = {f"d{d}": int(g) for d, g in zip(judged, rng.integers(1, 4, size=len(judged)), strict=True)}
    qrels["q0"]["d79"] = 0  # not relevant
    data = RetrievalData(queries=queries, corpus=corpus, qrels=qrels)
    results = evaluate(text_model(WEIGHTS), data, k=(1, 3, 10), precision="fp32", device="cpu")
    assert list(results) == NAMES
    judged_ids = list(qrels)
    scores = cosine(
        np.stack([char_bag(queries[q]) for q in judged_ids]) * WEIGHTS, np.stack([char_bag(t) for t in corpus.values()]) * WEIGHTS
    )
    expected = ranx_evaluate(
        {q: {d: g for d, g in j.items() if g > 0} for q, j in qrels.items()}, scores, judged_ids, list(corpus), NAMES
    )
    for name in NAMES:
        assert results[name] == pytest.approx(expected[name], abs=1e-9), name


def test_pairs_group_repeated_queries_and_dedupe_documents():
    rng = np.random.default_rng(1)
    texts = random_texts(rng, 40)
    queries = [t[:7] for t in texts] + [texts[0][:7]]  # the first query has two documents
    documents = texts + [texts[5]]
    documents[3] = texts[2]  # a duplicate document: the corpus holds it once
    results = evaluate(
        text_model(WEIGHTS),
        PairData(queries, documents),
        k=(1, 3, 10),
        metrics=["recall", "ndcg@3", "mrr@10"],
        device="cpu",
        precision="fp32",
    )
    unique_docs = list(dict.fromkeys(documents))
    unique_queries = list(dict.fromkeys(queries))
    qrels: dict[str, dict[str, int]] = {}
    for q, d in zip(queries, documents, strict=True):
        qrels.setdefault(f"q{unique_queries.index(q)}", {})[f"d{unique_docs.index(d)}"] = 1
    assert len(qrels["q0"]) == 2
    scores = cosine(
        np.stack([char_bag(q) for q in unique_queries]) * WEIGHTS, np.stack([char_bag(d) for d in unique_docs]) * WEIGHTS
    )
    expected = ranx_evaluate(qrels, scores, list(qrels), [f"d{i}" for i in range(len(unique_docs))], list(results))
    assert list(results) == ["recall@1", "recall@3", "recall@10", "mrr@10", "ndcg@3"]
    for name, value in results.items():
        assert value == pytest.approx(expected[name], abs=1e-9), name


def test_text_to_image_pairs_are_measured_both_ways():
    rng = np.random.default_rng(2)
    texts = random_texts(rng, 30)
    images = [char_bag(t) for t in texts]  # each image sits exactly on its caption
    model = EmbeddingModel({"text": CharTower(), "image": VectorTower()})
    results = evaluate(model, PairData(texts, images), k=(1, 5), device="cpu")
    assert set(results) == {
        f"{d}/{f}@{k}" for d in ("t2i", "i2t") for f in ("precision", "recall", "hit_rate", "mrr", "map", "ndcg") for k in (1, 5)
    }
    assert results["t2i/recall@1"] == results["i2t/recall@1"] == 1.0
    assert results["t2i/precision@5"] == pytest.approx(0.2)

    shuffled = images[1:] + images[:1]  # captions now describe the next image: worse, and asymmetric rows
    worse = evaluate(model, PairData(texts, shuffled), k=5, metrics=["t2i/recall@5", "i2t/mrr"], device="cpu")
    assert set(worse) == {"t2i/recall@5", "i2t/mrr@5"}
    assert worse["t2i/recall@5"] < 1.0


def test_labeled_data_matches_pytorch_metric_learning_and_ranx():
    rng = np.random.default_rng(3)
    labels = [str(x) for x in rng.integers(0, 8, size=120)] + ["lonely"]
    table = (
        rng.normal(size=(121, 12)).astype(np.float32) + np.array([int(x) if x != "lonely" else 0 for x in labels])[:, None] * 0.2
    )
    model = EmbeddingModel({"text": LookupTower(table)})
    results = evaluate(model, LabeledData(items=list(range(121)), labels=labels), k=(1, 3, 10), device="cpu", precision="fp32")
    assert list(results) == [*NAMES, "r_precision", "map@r"]

    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    codes = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    numeric = np.array([codes[label] for label in labels])
    expected = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
        device=torch.device("cpu"),
    ).get_accuracy(table / np.linalg.norm(table, axis=1, keepdims=True), numeric)
    assert results["map@r"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-6)
    assert results["r_precision"] == pytest.approx(expected["r_precision"], abs=1e-6)

    scores = cosine(table[:120], table)
    scores[np.arange(120), np.arange(120)] = -np.inf  # the query itself is not retrieved
    qrels = {f"q{i}": {f"d{j}": 1 for j in range(121) if j != i and labels[j] == labels[i]} for i in range(120)}
    ranx_scores = np.where(np.isinf(scores), -1e9, scores)
    expected_ranx = ranx_evaluate(qrels, ranx_scores, list(qrels), [f"d{j}" for j in range(121)], NAMES)
    for name in NAMES:
        assert results[name] == pytest.approx(expected_ranx[name], abs=1e-6), name


def test_labeled_data_without_any_shared_label_is_an_error():
    with pytest.raises(DataError, match="no query has a relevant document"):
        evaluate(text_model(), LabeledData(items=["a", "b"], labels=["x", "y"]), device="cpu")


def test_scored_pairs_correlate_cosine_with_scores():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    a = random_texts(rng, 60)
    b = [t[: int(n)] + "zz" for t, n in zip(a, rng.integers(2, 14, size=60), strict=True)]
    scores = [float(s) for s in rng.integers(0, 6, size=60)]  # ties, as in STS
    results = evaluate(text_model(WEIGHTS), ScoredData(a, b, scores), device="cpu", precision="fp32")
    assert list(results) == ["pearson", "spearman"]
    cos = np.array([cosine(char_bag(x)[None] * WEIGHTS, char_bag(y)[None] * WEIGHTS)[0, 0] for x, y in zip(a, b, strict=True)])
    assert results["pearson"] == pytest.approx(stats.pearsonr(cos, scores).statistic, abs=1e-6)
    assert results["spearman"] == pytest.approx(stats.spearmanr(cos, scores).statistic, abs=1e-6)
    assert set(evaluate(text_model(), ScoredData(a, b, scores), metrics="spearman", device="cpu")) == {"spearman"}
    with pytest.raises(DataError, match="different scores"):
        evaluate(text_model(), ScoredData(a[:3], b[:3], [1.0, 1.0, 1.0]), device="cpu")


def test_unknown_metric_names_list_the_valid_ones():
    data = LabeledData(items=["aa", "ab", "zz", "zy"], labels=["x", "x", "y", "y"])
    with pytest.raises(UnknownNameError, match="ndcg@5") as info:
        evaluate(text_model(), data, k=5, metrics=["ndgc@5"], device="cpu")
    assert "r_precision" in str(info.value)
    with pytest.raises(UnknownNameError, match="pearson"):
        evaluate(text_model(), data, metrics=["pearson"], device="cpu")
    with pytest.raises(UnknownNameError, match="direction"):
        evaluate(text_model(), data, metrics=["t2i/recall@5"], device="cpu")
    with pytest.raises(ValueError, match="positive integer"):
        evaluate(text_model(), data, k=[0, 5], device="cpu")


def test_metric_filters_pick_families_and_add_cut_offs():
    data = LabeledData(items=["aaa", "aab", "zzz", "zzy", "mmm", "mmn"], labels=["x", "x", "y", "y", "z", "z"])
    results = evaluate(text_model(), data, k=(1, 2), metrics=["map", "recall@4", "map@r"], device="cpu")
    assert list(results) == ["recall@4", "map@1", "map@2", "map@r"]
    assert results["recall@4"] == 1.0 and results["map@r"] == 1.0
    numpy_labels = LabeledData(items=data.items, labels=list(np.array([7, 7, 8, 8, 9, 9])))  # numpy scalars compare by value
    assert evaluate(text_model(), numpy_labels, k=(1, 2), metrics=["map", "recall@4", "map@r"], device="cpu") == results


def register_char_bag() -> None:
    """Register the ``char-bag`` backbone (a CharTower) through a plugin, as a user's package would."""
    from finetuner.plugins import register_plugin

    class Plugin:
        @finetuner.hookimpl
        def finetuner_register_backbones(self, register):
            register(
                finetuner.BackboneSpec(
                    "char-bag",
                    "text-to-text",
                    DIM,
                    "bag",
                    "test chars",
                    build=lambda pretrained=True, local_dir=None: CharTower(),
                )
            )

    register_plugin(Plugin(), "evaluation-test")


def test_artifact_directory_and_top_level_function(tmp_path):
    from finetuner.artifacts import save

    register_char_bag()
    model = finetuner.build_model("char-bag")
    with torch.no_grad():
        model.towers["text"].scale[:5] = 3.0
    save(model, tmp_path / "artifact")
    data = PairData(["hello world", "goodbye moon", "cats"], ["hello, world!", "good bye, moon", "a cat"])
    assert finetuner.evaluate(tmp_path / "artifact", data, device="cpu") == evaluate(model, data, device="cpu")


def test_compare_and_render_tables():
    table = compare({"recall@5": 0.5, "mrr@5": 0.25}, {"recall@5": 0.75, "mrr@5": 0.2, "ndcg@5": 0.6})
    lines = table.splitlines()
    assert "metric" in lines[1] and "before" in lines[1] and "after" in lines[1] and "change" in lines[1]
    row = next(line for line in lines if "recall@5" in line)
    assert "0.5000" in row and "0.7500" in row and "+0.2500" in row
    assert "-0.0500" in next(line for line in lines if "mrr@5" in line)
    assert "-" in next(line for line in lines if "ndcg@5" in line).split("0.6000")[0]
    assert "0.1235" in render({"pearson": 0.123456})


def _cli_setup(monkeypatch, tmp_path):
    """A registered tiny backbone, and load_data replaced by a recorder (the readers are tested elsewhere)."""
    import finetuner.data

    register_char_bag()
    calls = []

    def load_data(source, kind=None, **options):
        calls.append((source, kind))
        return LabeledData(items=["aaa", "aab", "zzz", "zzy"], labels=["x", "x", "y", "y"], source=str(source))

    monkeypatch.setattr(finetuner.data, "load_data", load_data, raising=False)
    return calls


def test_cli_evaluate_json(monkeypatch, tmp_path, capsys):
    from finetuner.cli import main

    calls = _cli_setup(monkeypatch, tmp_path)
    code = main(
        [
            "evaluate",
            "char-bag",
            str(tmp_path / "data.csv"),
            "--kind",
            "labeled",
            "--k",
            "1",
            "3",
            "--metrics",
            "recall",
            "map@r",
            "--json",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert calls == [(str(tmp_path / "data.csv"), "labeled")]
    results = json.loads(capsys.readouterr().out)
    assert results == {"recall@1": 1.0, "recall@3": 1.0, "map@r": 1.0}


def test_cli_evaluate_artifact_table_and_errors(monkeypatch, tmp_path, capsys):
    from finetuner.artifacts import save
    from finetuner.cli import main

    _cli_setup(monkeypatch, tmp_path)
    save(finetuner.build_model("char-bag"), tmp_path / "artifact")
    assert main(["evaluate", str(tmp_path / "artifact"), "data.csv", "--k", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ndcg@2" in out and "map@r" in out and "1.0000" in out
    assert main(["evaluate", "char-bag", "data.csv", "--metrics", "bogus", "--device", "cpu"]) == 1
    assert "unknown metric 'bogus'" in capsys.readouterr().err
