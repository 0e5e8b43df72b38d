"""Example queries and their top results, before and after fine-tuning, for the report.

A few queries are picked from the eval data deterministically, with a small corpus: their
relevant documents plus a fixed sample of the rest, capped at ``max_corpus`` items so the
extra encoding stays cheap however large the eval set. Results are stored JSON-ready:
text as text, image files as absolute paths, in-memory images as small base64 PNG
thumbnails (``data:image/png;base64,...``). Scored data has no queries: no examples.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.data.types import LabeledData, PairData, RetrievalData, distinct
from finetuner.models.embedding import EmbeddingModel

MAX_CORPUS = 256
THUMBNAIL_SIZE = 96
MAX_TEXT = 1000
SHOWN_EXPECTED = 3


@dataclass
class ExampleProbe:
    """Example queries, the corpus they search, and which corpus positions are relevant to each."""

    queries: list[Any]
    corpus: list[Any]
    relevant: list[set[int]]
    query_labels: list[str] | None = None
    corpus_labels: list[str] | None = None
    own_position: list[int] | None = None  # labeled data: each query's own place in the corpus, never retrieved

    def top(
        self, model: EmbeddingModel, *, k: int = 5, batch_size: int = 64, precision: str = "auto", device: Any = "auto"
    ) -> list[list[dict[str, Any]]]:
        """Each query's ``k`` best corpus items under ``model``: ``{"item", "score", "relevant"[, "label"]}``."""
        from finetuner.evaluation.retrieval import top_k

        options = {"batch_size": batch_size, "precision": precision, "device": device}
        queries, corpus = _normalised(model, self.queries, options), _normalised(model, self.corpus, options)
        exclude = np.asarray(self.own_position) if self.own_position is not None else None
        scores, indices = top_k(queries, corpus, k, exclude=exclude)
        modality = item_modality(model, self.corpus[0])
        results = []
        for row, (values, positions) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True)):
            entries = []
            for score, position in zip(values, positions, strict=True):
                entry = {
                    "item": describe_item(self.corpus[position], modality),
                    "score": round(score, 4),
                    "relevant": position in self.relevant[row],
                }
                if self.corpus_labels is not None:
                    entry["label"] = self.corpus_labels[position]
                entries.append(entry)
            results.append(entries)
        return results

    def records(self, model: EmbeddingModel, before: Sequence[Any] | None, after: Sequence[Any]) -> list[dict[str, Any]]:
        """One JSON-ready record per query: the query, its label or expected documents, results before and after."""
        query_modality, result_modality = item_modality(model, self.queries[0]), item_modality(model, self.corpus[0])
        records = []
        for row, query in enumerate(self.queries):
            record: dict[str, Any] = {
                "query": describe_item(query, query_modality),
                "query_modality": query_modality,
                "result_modality": result_modality,
            }
            if self.query_labels is not None:
                record["label"] = self.query_labels[row]
            else:
                record["expected"] = [
                    describe_item(self.corpus[p], result_modality) for p in sorted(self.relevant[row])[:SHOWN_EXPECTED]
                ]
            record.update(
                searched=len(self.corpus) - (self.own_position is not None),
                before=list(before[row]) if before else [],
                after=list(after[row]),
            )
            records.append(record)
        return records


def select_examples(data: Any, *, count: int = 5, max_corpus: int = MAX_CORPUS, seed: int = 0) -> ExampleProbe | None:
    """Pick ``count`` example queries from eval ``data`` (the same ones every time); None for scored data."""
    rng = np.random.default_rng(seed)
    if isinstance(data, LabeledData):
        return _labeled(data, count, max_corpus, rng)
    if isinstance(data, PairData):
        queries, query_of_pair = distinct(data.queries)
        corpus, document_of_pair = distinct(data.documents)
        relevant: list[set[int]] = [set() for _ in queries]
        for q, d in zip(query_of_pair.tolist(), document_of_pair.tolist(), strict=True):
            relevant[q].add(d)
        return _judged(queries, corpus, relevant, count, max_corpus, rng)
    if isinstance(data, RetrievalData):
        ids = list(data.corpus)
        position = {doc_id: i for i, doc_id in enumerate(ids)}
        query_ids = [q for q in data.queries if any(g >= 1 and d in position for d, g in data.qrels.get(q, {}).items())]
        relevant = [{position[d] for d, g in data.qrels[q].items() if g >= 1 and d in position} for q in query_ids]
        return _judged([data.queries[q] for q in query_ids], [data.corpus[d] for d in ids], relevant, count, max_corpus, rng)
    return None


def _judged(
    queries: list[Any], corpus: list[Any], relevant: list[set[int]], count: int, max_corpus: int, rng: np.random.Generator
) -> ExampleProbe | None:
    if not queries:
        return None
    chosen = sorted(rng.choice(len(queries), size=min(count, len(queries)), replace=False).tolist())
    needed = sorted(set().union(*(relevant[q] for q in chosen)))[: max_corpus // 2]
    kept = _fill(needed, len(corpus), max_corpus, rng)
    where = {old: new for new, old in enumerate(kept)}
    return ExampleProbe(
        queries=[queries[q] for q in chosen],
        corpus=[corpus[p] for p in kept],
        relevant=[{where[p] for p in relevant[q] if p in where} for q in chosen],
    )


def _labeled(data: LabeledData, count: int, max_corpus: int, rng: np.random.Generator) -> ExampleProbe | None:
    counts = data.label_counts()
    chosen, seen = [], set()
    order = rng.permutation(len(data.items)).tolist()
    for first_pass in (True, False):  # distinct labels first, then any item that has a match
        for i in order:
            label = data.labels[i]
            if len(chosen) < count and counts[label] > 1 and i not in chosen and not (first_pass and label in seen):
                chosen.append(i)
                seen.add(label)
    if not chosen:
        return None
    wanted = {data.labels[i] for i in chosen}
    matches = [i for i in range(len(data.items)) if data.labels[i] in wanted and i not in chosen]
    picked = rng.choice(len(matches), size=min(len(matches), max_corpus // 2), replace=False) if matches else []
    kept = _fill(sorted([*chosen, *(matches[j] for j in picked)]), len(data.items), max_corpus, rng)
    where = {old: new for new, old in enumerate(kept)}
    labels = [data.labels[i] for i in kept]
    return ExampleProbe(
        queries=[data.items[i] for i in chosen],
        corpus=[data.items[i] for i in kept],
        relevant=[{p for p, label in enumerate(labels) if label == data.labels[i] and p != where[i]} for i in chosen],
        query_labels=[data.labels[i] for i in chosen],
        corpus_labels=labels,
        own_position=[where[i] for i in chosen],
    )


def _fill(needed: list[int], size: int, max_corpus: int, rng: np.random.Generator) -> list[int]:
    """``needed`` positions plus a random sample of the others, ``max_corpus`` at most, in corpus order."""
    if size <= max_corpus:
        return list(range(size))
    taken = set(needed)
    others = np.setdiff1d(np.arange(size), np.fromiter(taken, dtype=np.int64, count=len(taken)))
    extra = rng.choice(others, size=max(0, min(len(others), max_corpus - len(taken))), replace=False).tolist()
    return sorted(taken.union(extra))


def _normalised(model: EmbeddingModel, items: list[Any], options: dict[str, Any]) -> np.ndarray:
    from finetuner.encoding import encode

    embeddings = encode(model, items, **options)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def item_modality(model: EmbeddingModel, item: Any) -> str:
    """Which tower embeds ``item``: the only one, else text for strings and image for the rest."""
    if len(model.modalities) == 1:
        return model.modalities[0]
    return "text" if isinstance(item, str) else "image"


def describe_item(item: Any, modality: str) -> str:
    """A JSON-ready stand-in: the text (cut to MAX_TEXT), an image file's absolute path, or a PNG thumbnail data URI."""
    if modality == "text":
        text = str(item)
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    if isinstance(item, (str, Path)):
        return str(Path(item).expanduser().resolve())
    return thumbnail(item)


def thumbnail(image: Any, size: int = THUMBNAIL_SIZE) -> str:
    """A ``data:image/png;base64,...`` URI of a PIL image, HWC/CHW array or tensor, at most ``size`` pixels a side."""
    from PIL import Image

    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.dtype != np.uint8:
            array = np.asarray(array, dtype=np.float64)
            array = np.clip(array * 255 if array.max(initial=0) <= 1.0 else array, 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
