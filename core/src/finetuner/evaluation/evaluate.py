"""evaluate(): embed a data set with a model and measure retrieval or similarity quality."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetuner.data.types import LabeledData, PairData, RetrievalData, ScoredData, distinct
from finetuner.errors import DataError, FinetunerError, OptionError, UnknownNameError
from finetuner.evaluation.metrics import (
    AT_K,
    AT_R,
    CORRELATIONS,
    Judgments,
    binary_ideal,
    k_of,
    parse_at_k,
    pearson,
    ranking_metrics,
    spearman,
)
from finetuner.prompts import side_prompt

logger = logging.getLogger("finetuner")
if TYPE_CHECKING:  # torch is imported on first use: finetuner.evaluation.metrics stays light for the report
    import torch

    from finetuner.models.embedding import EmbeddingModel

DATA_TYPES = (PairData, LabeledData, ScoredData, RetrievalData)
DIRECTIONS = ("t2i", "i2t")
QUERY, DOCUMENT = "query", "document"  # the sides whose prompts queries and documents get


def evaluate(
    model: EmbeddingModel | str | Path,
    data: Any,
    *,
    k: int | Iterable[int] = (1, 5, 10, 20),
    metrics: str | Sequence[str] | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    device: str | torch.device = "auto",
    modality: str | None = None,
    compile: bool = False,
    truncate_dim: int | None = None,
    quantize: str | None = None,
    rescore: int | None = None,
) -> dict[str, float]:
    """Measure how well ``model`` retrieves (or scores) ``data``; returns ``{metric name: value}``.

    ``model`` is an :class:`EmbeddingModel`, an artifact directory or a backbone name (see
    :func:`finetuner.encoding.as_model`). ``data`` is one of the data classes or anything
    :func:`finetuner.data.load_data` reads. Queries get the model's ``"query"`` prompt and documents
    its ``"document"`` prompt, as in training; labeled items and scored pairs its default prompt
    (see :mod:`finetuner.prompts`). Per kind:

    - labeled: every item queries all the others; items with its label are relevant.
      Adds ``r_precision`` and ``map@r``.
    - pairs: each unique query against the unique documents (and hard negatives, when the pairs
      have some); its documents are relevant.
      A text-to-image model is measured both ways, as ``t2i/...`` and ``i2t/...``.
    - retrieval: queries against the corpus with graded qrels (grade >= 1 is relevant).
    - scored: ``pearson`` and ``spearman`` of the cosine similarity against the scores.

    Ranking metrics are ``precision``, ``recall``, ``hit_rate``, ``mrr``, ``map`` and ``ndcg``
    at each ``k`` (``"ndcg@10"``), averaged over the queries that have a relevant document.
    ``metrics`` picks some: a family (``"ndcg"``, at every k), a full name (``"recall@50"``,
    adding its k) or either behind a direction (``"t2i/recall@5"``). ``precision``, ``compile``
    and ``truncate_dim`` (the first dimensions, re-normalised) are :func:`finetuner.encode`'s.

    ``quantize="int8"``, ``"uint8"``, ``"binary"`` or ``"ubinary"`` searches the corpus's codes
    with the queries' codes (see :mod:`finetuner.quantize`); int8/uint8 use the model's ranges
    (:func:`finetuner.calibrate`), else ranges calibrated on the corpus. ``rescore=N`` re-ranks
    each query's top N of that search with its float32 embedding against the decoded codes.
    """
    from finetuner.encoding import as_model

    model = as_model(model)
    search = _Search.checked(model, truncate_dim, quantize, rescore)
    data = _as_data(data)
    ks = _check_k(k)
    options = {
        "batch_size": batch_size,
        "precision": precision,
        "device": device,
        "compile": compile,
        "truncate_dim": truncate_dim,
    }
    if isinstance(data, ScoredData):
        if quantize is not None:
            raise OptionError("quantize= measures retrieval with quantized search; scored data gives correlations of floats")
        names = _select("scored", ks, metrics, [""])[""]
        return _evaluate_scored(model, data, names, modality, options)
    directions = _directions(model, data, modality)
    selected = _select(data.kind, ks, metrics, directions)
    rankings = _rankings(model, data, modality, options, directions)
    results: dict[str, float] = {}
    for direction, ranking in rankings.items():
        if selected[direction]:
            prefix = f"{direction}/" if direction else ""
            values = _score(ranking, selected[direction], options["device"], search)
            results.update({prefix + name: value for name, value in values.items()})
    return results


@dataclass
class _Ranking:
    """One retrieval task: query and corpus embeddings and who is relevant to whom."""

    queries: np.ndarray
    corpus: np.ndarray
    num_relevant: np.ndarray
    relevance: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (query positions, ranked corpus positions) -> grades
    ideal: Callable[[np.ndarray, int], np.ndarray]  # (query positions, width) -> best grades, descending
    exclude: np.ndarray | None = None  # corpus position each query must not retrieve (itself)


@dataclass
class _Search:
    """How the corpus is searched: exact float32, or quantized codes (with the model's ranges, if any) and rescoring."""

    precision: str | None = None
    ranges: np.ndarray | None = None
    rescore: int | None = None

    @classmethod
    def checked(cls, model: EmbeddingModel, truncate_dim: int | None, quantize: str | None, rescore: int | None) -> _Search:
        from finetuner.quantize import SCALAR, check_precision, check_rescore
        from finetuner.truncation import check_dim

        dim = model.output_dim if truncate_dim is None else check_dim(truncate_dim, model.output_dim)
        if quantize is None:
            if rescore is not None:
                raise OptionError("rescore= re-ranks a quantized search: give quantize= too")
            return cls()
        ranges = model.quantization_ranges.get(dim) if check_precision(quantize, "quantize") in SCALAR else None
        return cls(quantize, ranges, check_rescore(rescore))

    def top_k(self, queries: np.ndarray, corpus: np.ndarray, ks: np.ndarray, **options: Any) -> Iterator[Any]:
        """:func:`finetuner.evaluation.retrieval.iter_top_k`, or its quantized twin :func:`finetuner.quantize.iter_search`."""
        from finetuner.evaluation.retrieval import iter_top_k
        from finetuner.quantize import SCALAR, calibrate, iter_search, quantize_embeddings

        if self.precision is None:
            return iter_top_k(queries, corpus, ks, **options)
        ranges = self.ranges
        if ranges is None and self.precision in SCALAR:
            logger.info("the model has no %s ranges at %d dims: calibrating on the corpus", self.precision, corpus.shape[1])
            ranges = calibrate(corpus)
        codes = quantize_embeddings(corpus, self.precision, ranges)
        return iter_search(queries, codes, ks, precision=self.precision, ranges=ranges, rescore=self.rescore, **options)


def _as_data(data: Any) -> Any:
    if isinstance(data, DATA_TYPES):
        return data
    from finetuner.data import load_data

    return load_data(data)


def _check_k(k: int | Iterable[int]) -> list[int]:
    values = [k] if isinstance(k, int) else list(k)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"k must be a positive integer or a list of them, got {k!r}")
    return sorted({int(v) for v in values})


def _directions(model: EmbeddingModel, data: Any, modality: str | None) -> list[str]:
    """``["t2i", "i2t"]`` for text -> image pairs with a text-to-image model, else one unnamed direction."""
    if (
        isinstance(data, PairData)
        and modality is None
        and model.task == "text-to-image"
        and all(isinstance(q, str) for q in data.queries)
        and not any(isinstance(d, str) for d in data.documents)
    ):
        return list(DIRECTIONS)
    return [""]


def _select(kind: str, ks: list[int], metrics: str | Sequence[str] | None, directions: list[str]) -> dict[str, list[str]]:
    """The metric names to compute per direction, in a fixed order."""
    if kind == "scored":
        valid, default = list(CORRELATIONS), list(CORRELATIONS)
    else:
        at_k = [f"{family}@{k}" for family in AT_K for k in ks]
        valid = [*AT_K, *AT_R, *at_k]
        default = at_k + (list(AT_R) if kind == "labeled" else [])
    if metrics is None:
        return {d: default for d in directions}
    chosen: dict[str, set[str]] = {d: set() for d in directions}
    for wanted in [metrics] if isinstance(metrics, str) else metrics:
        direction, _, base = wanted.rpartition("/")
        if direction and direction not in chosen:
            named = [d for d in directions if d]
            raise UnknownNameError("metric direction", direction, named, hint=f"(in {wanted!r})")
        names = _match(base, kind, ks, valid)
        for d in [direction] if direction else directions:
            chosen[d].update(names)
    order = [*AT_K, *AT_R, *CORRELATIONS]
    return {
        d: sorted(names, key=lambda n: (order.index(n.partition("@")[0] if n not in order else n), k_of(n) or 0))
        for d, names in chosen.items()
    }


def _match(name: str, kind: str, ks: list[int], valid: list[str]) -> list[str]:
    if kind == "scored":
        if name in CORRELATIONS:
            return [name]
    elif name in AT_K:
        return [f"{name}@{k}" for k in ks]
    elif name in AT_R:
        return [name]
    else:
        try:
            parse_at_k(name)
            return [name]
        except ValueError:
            pass
    raise UnknownNameError("metric", name, valid, hint=f"(for {kind} data)")


def _embed(
    model: EmbeddingModel, items: Sequence[Any], modality: str | None, options: dict[str, Any], side: str | None = None
) -> np.ndarray:
    """L2-normalised float32 embeddings (cosine similarity is then an inner product) of the ``"query"`` or
    ``"document"`` side (its prompt), or of items of no side (the default prompt)."""
    from finetuner.encoding import encode

    prompt = side_prompt(model, side) if side is not None else None
    embeddings = encode(model, items, modality=modality, prompt=prompt, **options)
    if not np.isfinite(embeddings).all():
        bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
        raise FinetunerError(f"the model produced non-finite embeddings (NaN or inf) for {bad} of {len(items)} items")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def _embed_all(
    model: EmbeddingModel, items: Sequence[Any], modality: str | None, options: dict[str, Any], side: str | None = None
) -> np.ndarray:
    """Embeddings for every item, each distinct item encoded once."""
    unique, inverse = distinct(items)
    return _embed(model, unique, modality, options, side)[inverse]


def _rankings(
    model: EmbeddingModel, data: Any, modality: str | None, options: dict[str, Any], directions: list[str]
) -> dict[str, _Ranking]:
    if isinstance(data, LabeledData):
        return {"": _labeled(model, data, modality, options)}
    if isinstance(data, PairData):
        return _pairs(model, data, modality, options, directions)
    if isinstance(data, RetrievalData):
        return {"": _retrieval(model, data, modality, options)}
    raise TypeError(f"data must be PairData, LabeledData, ScoredData or RetrievalData, got {type(data).__name__}")


def _labeled(model: EmbeddingModel, data: LabeledData, modality: str | None, options: dict[str, Any]) -> _Ranking:
    if len(data.items) != len(data.labels):
        raise DataError(f"{data.source}: {len(data.items)} items but {len(data.labels)} labels")
    embeddings = _embed_all(model, data.items, modality, options)
    _, codes = distinct(data.labels)
    num_relevant = np.bincount(codes)[codes] - 1
    logger.info("evaluating %s: %d items, each against the rest", data.source, len(codes))
    return _Ranking(
        queries=embeddings,
        corpus=embeddings,
        num_relevant=num_relevant,
        relevance=lambda q, ranked: (codes[ranked] == codes[q][:, None]).astype(np.float64),
        ideal=lambda q, width: binary_ideal(num_relevant[q], width),
        exclude=np.arange(len(codes)),
    )


def _pairs(
    model: EmbeddingModel, data: PairData, modality: str | None, options: dict[str, Any], directions: list[str]
) -> dict[str, _Ranking]:
    if len(data.queries) != len(data.documents):
        raise DataError(f"{data.source}: {len(data.queries)} queries but {len(data.documents)} documents")
    two_way = directions == list(DIRECTIONS)
    left, left_of_pair = distinct(data.queries)
    # hard negatives join the documents every query is ranked against (relevant to none)
    right, right_of_item = distinct([*data.documents, *(n for row in data.negatives or [] for n in row)])
    right_of_pair = right_of_item[: len(data.documents)]
    left_embeddings = _embed(model, left, "text" if two_way else modality, options, QUERY)
    right_embeddings = _embed(model, right, "image" if two_way else modality, options, DOCUMENT)
    with_negatives = " (hard negatives included)" if data.negatives else ""
    logger.info("evaluating %s: %d queries against %d documents%s", data.source, len(left), len(right), with_negatives)
    forward = _judged(left_embeddings, right_embeddings, left_of_pair, right_of_pair)
    if not two_way:
        return {"": forward}
    return {"t2i": forward, "i2t": _judged(right_embeddings, left_embeddings, right_of_pair, left_of_pair)}


def _judged(queries: np.ndarray, corpus: np.ndarray, query_of_pair: np.ndarray, document_of_pair: np.ndarray) -> _Ranking:
    per_query: list[dict[int, float]] = [{} for _ in range(len(queries))]
    for q, d in zip(query_of_pair.tolist(), document_of_pair.tolist(), strict=True):
        per_query[q][d] = 1.0
    return _from_judgments(queries, corpus, Judgments(per_query, len(corpus)))


def _from_judgments(queries: np.ndarray, corpus: np.ndarray, judgments: Judgments) -> _Ranking:
    return _Ranking(queries, corpus, judgments.num_relevant, judgments.relevance, judgments.ideal)


def _retrieval(model: EmbeddingModel, data: RetrievalData, modality: str | None, options: dict[str, Any]) -> _Ranking:
    query_ids, corpus_ids = list(data.queries), list(data.corpus)
    position = {doc_id: i for i, doc_id in enumerate(corpus_ids)}
    unknown = sum(1 for judged in data.qrels.values() for doc_id in judged if doc_id not in position)
    if unknown:
        logger.warning(
            "%s: %d relevance judgments name documents missing from the corpus; they are ignored", data.source, unknown
        )
    per_query = [{position[d]: g for d, g in data.qrels.get(qid, {}).items() if d in position} for qid in query_ids]
    judgments = Judgments(per_query, len(corpus_ids))
    asked = [i for i, n in enumerate(judgments.num_relevant) if n > 0]
    embedded = _embed_all(model, [data.queries[query_ids[i]] for i in asked], modality, options, QUERY)
    queries = np.zeros((len(query_ids), embedded.shape[1]), dtype=np.float32)
    queries[asked] = embedded
    corpus = _embed_all(model, [data.corpus[d] for d in corpus_ids], modality, options, DOCUMENT)
    logger.info("evaluating %s: %d judged queries against %d documents", data.source, len(asked), len(corpus_ids))
    return _from_judgments(queries, corpus, judgments)


def _score(ranking: _Ranking, names: list[str], device: str | torch.device, search: _Search) -> dict[str, float]:
    """Average each metric over the queries that have at least one relevant document."""
    from finetuner.runtime import resolve_device

    evaluated = np.flatnonzero(ranking.num_relevant > 0)
    if not len(evaluated):
        raise DataError(
            "no query has a relevant document: labeled data needs a label with two items or more, retrieval data a qrel with grade 1 or more"
        )
    max_k = max((k_of(n) or 0 for n in names), default=0)
    ks = np.full(len(evaluated), max(max_k, 1))
    if any(n in AT_R for n in names):
        ks = np.maximum(ks, ranking.num_relevant[evaluated])
    exclude = ranking.exclude[evaluated] if ranking.exclude is not None else None
    sums = dict.fromkeys(names, 0.0)
    for rows, _, ranked in search.top_k(
        ranking.queries[evaluated], ranking.corpus, ks, exclude=exclude, device=resolve_device(device)
    ):
        queries = evaluated[rows]
        relevance = ranking.relevance(queries, ranked)
        values = ranking_metrics(relevance, ranking.num_relevant[queries], ranking.ideal(queries, max_k), names)
        for name, per_query in values.items():
            sums[name] += float(per_query.sum())
    return {name: total / len(evaluated) for name, total in sums.items()}


def _evaluate_scored(
    model: EmbeddingModel, data: ScoredData, names: list[str], modality: str | None, options: dict[str, Any]
) -> dict[str, float]:
    if not len(data.a) == len(data.b) == len(data.scores):
        raise DataError(f"{data.source}: {len(data.a)} a, {len(data.b)} b and {len(data.scores)} scores; they must match")
    scores = np.asarray(data.scores, dtype=np.float64)
    if len(scores) < 2 or np.all(scores == scores[0]):
        raise DataError(f"{data.source}: correlations need at least two pairs with different scores")
    embeddings = _embed_all(model, [*data.a, *data.b], modality, options)
    cosine = (embeddings[: len(scores)] * embeddings[len(scores) :]).sum(axis=1)
    logger.info("evaluating %s: %d scored pairs", data.source, len(scores))
    functions = {"pearson": pearson, "spearman": spearman}
    return {name: functions[name](cosine, scores) for name in names}
