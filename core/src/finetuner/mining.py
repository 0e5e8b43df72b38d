"""mine_hard_negatives(): add hard negatives to (query, document) pairs with a model's exact top-k.

Every query is scored against every corpus document (cosine similarity of the model's
embeddings) by a chunked exact search: queries go in blocks of :data:`QUERY_BLOCK`, the
corpus in chunks of :data:`CORPUS_CHUNK`, and each block keeps a running top-k, so the
scores held at once are one block by one chunk (64 MiB) whatever the corpus size. Beside
them sit the embeddings themselves (corpus and queries, float32).

A candidate is a corpus document ranked by score, never one of the query's positives: a
document equal to a positive (or to the query) is no candidate, and documents are compared
by text with runs of whitespace collapsed, so a duplicate of a positive is caught too.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from finetuner.errors import DataError
from finetuner.models.embedding import EmbeddingModel

logger = logging.getLogger("finetuner")

QUERY_BLOCK = 1024  # queries scored at once
CORPUS_CHUNK = 16384  # corpus documents scored at once: 1024 x 16384 float32 scores = 64 MiB
EMBED_CHUNK = 8192  # items per encode() call, for the progress bar
SAMPLING = ("top", "random")


@dataclass
class _Pool:
    """Unique documents: the searched corpus first, then positives missing from it (embedded, never searched)."""

    items: list[Any]
    index: dict[Any, int]
    searched: int


def mine_hard_negatives(
    model: EmbeddingModel | str | os.PathLike,
    pairs: Any,
    corpus: Sequence[Any] | None = None,
    *,
    num_negatives: int = 3,
    rank_range: tuple[int, int] | None = None,
    margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    batch_size: int = 64,
    seed: int = 0,
    output: str | os.PathLike | None = None,
    precision: str = "auto",
    device: str | torch.device = "auto",
    progress: bool = True,
) -> list[tuple[Any, ...]]:
    """``(query, document, negative_1, ..., negative_n)`` for every pair that got ``num_negatives`` negatives.

    ``model`` is an :class:`EmbeddingModel`, an artifact directory or a backbone name.
    ``pairs`` is anything :func:`finetuner.load_data` reads as pairs. ``corpus`` is the
    documents to mine from (default: the pairs' own documents); positives missing from it
    are still known as positives.

    For each query the candidates are ranked by cosine similarity; ``rank_range=(low, high)``
    keeps ranks ``low`` to ``high - 1`` (0 is the most similar candidate; default
    ``(0, 10 * num_negatives)``). For each pair, a candidate scoring too close to the pair's
    own positive is skipped as a likely false negative: ``margin`` skips
    ``score > positive - margin``, ``relative_margin`` skips
    ``score > positive - |positive| * relative_margin`` (0.05 is NV-Retriever's recommendation).
    ``sampling="top"`` takes the best remaining candidates, ``"random"`` draws them uniformly
    (seeded by ``seed``); negatives are listed best first. A pair left with fewer than
    ``num_negatives`` candidates is dropped (a warning says how many).

    ``output`` writes the rows to a CSV with the header ``query,document,negative,negative_2,...``
    (text and image paths only). ``precision`` and ``device`` are :func:`finetuner.encode`'s.
    """
    from tqdm.auto import tqdm

    from finetuner.data import load_data
    from finetuner.encoding import as_model
    from finetuner.runtime import resolve_device

    _check_options(num_negatives, margin, relative_margin, sampling, batch_size)
    data = load_data(pairs, kind="pairs")
    model = as_model(model)
    pool = _pool(data, corpus)
    if pool.searched < 2:
        what = "corpus" if corpus is not None else "the pairs' documents (corpus=None)"
        raise DataError(f"{what} holds {pool.searched} distinct document(s); mining needs at least 2")
    if num_negatives > pool.searched:
        raise DataError(f"num_negatives={num_negatives} is larger than the corpus ({pool.searched} distinct documents)")
    low, high = _window(rank_range, num_negatives, pool.searched)

    unique_queries = [data.queries[row] for row in _first_rows(data.queries)]
    queries = {_key(query): number for number, query in enumerate(unique_queries)}
    positives = [(queries[_key(q)], pool.index[_key(d)]) for q, d in zip(data.queries, data.documents, strict=True)]

    two_towers = len(model.towers) > 1
    options = {"batch_size": batch_size, "precision": precision, "device": device}
    bar = tqdm(total=len(unique_queries) + len(pool.items), desc="mining: embedding", disable=not progress, unit="item")
    query_emb = _embed(model, unique_queries, "text" if two_towers else None, options, bar)
    doc_emb = _embed(model, pool.items, "image" if two_towers else None, options, bar)
    bar.close()

    excluded = _exclusions(positives, queries, pool)
    where = resolve_device(device)
    searched = doc_emb[: pool.searched].to(where)
    windows = []  # per unique query: the scores and corpus rows of its candidates in rank_range
    blocks = range(0, len(unique_queries), QUERY_BLOCK)
    for start in tqdm(blocks, desc="mining: searching", disable=not progress or len(blocks) < 2, unit="block"):
        stop = min(start + QUERY_BLOCK, len(unique_queries))
        scores, indices = _top_k(query_emb[start:stop].to(where), searched, high, excluded[start:stop])
        windows.append((scores[:, low:], indices[:, low:]))
    window_scores, window_indices = (torch.cat(parts) for parts in zip(*windows, strict=True))

    rng = np.random.default_rng(seed)
    chosen: list[list[int] | None] = []
    skipped = 0
    for start in range(0, len(positives), QUERY_BLOCK):  # pair by pair, in order: the draws do not depend on blocks
        part = torch.tensor(positives[start : start + QUERY_BLOCK])
        positive = (query_emb[part[:, 0]] * doc_emb[part[:, 1]]).sum(dim=1)
        picked, dropped = _pick(
            window_scores[part[:, 0]], window_indices[part[:, 0]], positive, num_negatives, margin, relative_margin, sampling, rng
        )
        chosen.extend(picked)
        skipped += dropped

    rows = [
        (query, document, *(pool.items[i] for i in negatives))
        for query, document, negatives in zip(data.queries, data.documents, chosen, strict=True)
        if negatives is not None
    ]
    _report(len(rows), len(data), skipped, num_negatives)
    if not rows:
        raise DataError(
            f"no pair has {num_negatives} negatives left after filtering: lower num_negatives, margin or relative_margin, "
            "or widen rank_range"
        )
    if output is not None:
        write_csv(rows, Path(output))
    return rows


def _check_options(
    num_negatives: int, margin: float | None, relative_margin: float | None, sampling: str, batch_size: int
) -> None:
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise DataError(f"num_negatives must be a positive integer, got {num_negatives!r}")
    for name, value in (("margin", margin), ("relative_margin", relative_margin)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)):
            raise DataError(f"{name} must be a number or None, got {value!r}")
    if sampling not in SAMPLING:
        raise DataError(f"sampling must be one of {', '.join(map(repr, SAMPLING))}, got {sampling!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")


def _window(rank_range: tuple[int, int] | None, num_negatives: int, size: int) -> tuple[int, int]:
    """``rank_range`` checked, its end cut to the corpus size."""
    if rank_range is None:
        rank_range = (0, 10 * num_negatives)
    try:
        low, high = (int(r) for r in rank_range)
    except (TypeError, ValueError):
        raise DataError(f"rank_range must be two integers (low, high), got {rank_range!r}") from None
    if not 0 <= low < high:
        raise DataError(f"rank_range={rank_range!r} must satisfy 0 <= low < high")
    high = min(high, size)
    if high - low < num_negatives:
        raise DataError(
            f"rank_range={tuple(rank_range)!r} leaves {max(0, high - low)} ranks (the corpus has {size} documents), "
            f"fewer than num_negatives={num_negatives}"
        )
    return low, high


def _key(item: Any) -> Any:
    """What makes two items the same document: text with whitespace runs collapsed, else the item's identity."""
    if isinstance(item, str):
        return " ".join(item.split())
    from finetuner.training.batches import item_key

    return item_key(item)


def _first_rows(items: Sequence[Any]) -> list[int]:
    """The row where each distinct item first appears, in order."""
    seen: dict[Any, int] = {}
    for row, item in enumerate(items):
        seen.setdefault(_key(item), row)
    return list(seen.values())


def _pool(data: Any, corpus: Sequence[Any] | None) -> _Pool:
    if isinstance(corpus, (str, bytes, os.PathLike)):
        raise DataError("corpus= is a list of documents, not a path; read the file into a list first")
    documents = list(data.documents if corpus is None else corpus)
    items = [documents[row] for row in _first_rows(documents)]
    index = {_key(item): number for number, item in enumerate(items)}
    searched = len(items)
    for document in data.documents:
        if _key(document) not in index:
            index[_key(document)] = len(items)
            items.append(document)
    return _Pool(items, index, searched)


def _embed(model: EmbeddingModel, items: list[Any], modality: str | None, options: dict[str, Any], bar: Any) -> torch.Tensor:
    from finetuner.encoding import encode

    parts = []
    for start in range(0, len(items), EMBED_CHUNK):
        chunk = items[start : start + EMBED_CHUNK]
        parts.append(encode(model, chunk, modality=modality, **options))
        bar.update(len(chunk))
    return F.normalize(torch.from_numpy(np.concatenate(parts)), dim=-1)


def _exclusions(positives: list[tuple[int, int]], queries: dict[Any, int], pool: _Pool) -> list[list[int]]:
    """Per unique query, the searched documents it must not get: its positives and itself."""
    excluded: list[set[int]] = [set() for _ in queries]
    for query, document in positives:
        if document < pool.searched:
            excluded[query].add(document)
    for key, query in queries.items():
        own = pool.index.get(key)
        if own is not None and own < pool.searched:
            excluded[query].add(own)
    return [sorted(s) for s in excluded]


def _top_k(queries: torch.Tensor, corpus: torch.Tensor, k: int, excluded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best corpus rows per query, excluded ones aside (``-inf`` where fewer remain): a running
    top-k over corpus chunks, so at most ``len(queries) x CORPUS_CHUNK`` scores exist at once."""
    device = queries.device
    rows = torch.tensor([r for r, cols in enumerate(excluded) for _ in cols], dtype=torch.long, device=device)
    cols = torch.tensor([c for cols in excluded for c in cols], dtype=torch.long, device=device)
    best_scores = queries.new_empty((len(queries), 0))
    best_indices = torch.empty((len(queries), 0), dtype=torch.long, device=device)
    for start in range(0, len(corpus), CORPUS_CHUNK):
        stop = min(start + CORPUS_CHUNK, len(corpus))
        scores = queries @ corpus[start:stop].T
        inside = (cols >= start) & (cols < stop)
        scores[rows[inside], cols[inside] - start] = -torch.inf
        values, positions = torch.topk(scores, min(k, stop - start), dim=1)
        merged_scores = torch.cat([best_scores, values], dim=1)
        merged_indices = torch.cat([best_indices, positions + start], dim=1)
        best_scores, order = torch.topk(merged_scores, min(k, merged_scores.shape[1]), dim=1)
        best_indices = merged_indices.gather(1, order)
    return best_scores.cpu(), best_indices.cpu()


def _pick(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive: torch.Tensor,
    count: int,
    margin: float | None,
    relative_margin: float | None,
    sampling: str,
    rng: np.random.Generator,
) -> tuple[list[list[int] | None], int]:
    """Per pair, ``count`` corpus indices from its query's ranked window (None when too few pass the margins
    against the pair's own positive score), and how many candidates the margins skipped."""
    valid = torch.isfinite(scores)
    reference = positive[:, None]
    allowed = valid.clone()
    if margin is not None:
        allowed &= scores <= reference - margin
    if relative_margin is not None:
        allowed &= scores <= reference - reference.abs() * relative_margin
    width = scores.shape[1]
    if sampling == "top":
        order_key = torch.arange(width, dtype=torch.float64).expand(len(scores), -1)
    else:
        order_key = torch.from_numpy(rng.random((len(scores), width)))
    order_key = torch.where(allowed, order_key, torch.inf)
    taken = torch.sort(torch.argsort(order_key, dim=1, stable=True)[:, :count], dim=1).values  # best first
    enough = allowed.gather(1, taken).all(dim=1)
    negatives = indices.gather(1, taken)
    picked = [row.tolist() if ok else None for row, ok in zip(negatives, enough.tolist(), strict=True)]
    return picked, int((valid & ~allowed).sum())


def _report(rows: int, pairs: int, skipped: int, count: int) -> None:
    logger.info("mined %d negatives for %d of %d pairs; the margins skipped %d candidates", count, rows, pairs, skipped)
    if rows < pairs and rows:
        logger.warning(
            "%d of %d pairs had fewer than %d negatives left after filtering and were dropped "
            "(lower margin/relative_margin or widen rank_range to keep them)",
            pairs - rows,
            pairs,
            count,
        )


def write_csv(rows: list[tuple[Any, ...]], path: Path) -> None:
    """Rows of texts and image paths -> a CSV with the header query,document,negative,negative_2,... (written atomically)."""
    width = len(rows[0])
    header = ["query", "document", "negative", *(f"negative_{n}" for n in range(2, width - 1))]
    for number, row in enumerate(rows):
        for column, value in zip(header, row, strict=True):
            if not isinstance(value, (str, Path)):
                raise DataError(
                    f"output=: row {number} column {column!r} is a {type(value).__name__}; "
                    "a CSV holds texts and image paths only (write the rows yourself, or keep images as files)"
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[str(value) for value in row] for row in rows])
    os.replace(partial, path)
    logger.info("wrote %d rows to %s", len(rows), path)
