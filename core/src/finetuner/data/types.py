"""The in-memory shapes training and evaluation data take once read.

Items are raw: strings (text), or images as file paths (``pathlib.Path``), PIL images,
numpy arrays or tensors. For text-to-image data the left side is text and the right side
is an image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass
class PairData:
    """Matching pairs: (query, document) or (text, image). Each pair's documents are its positives.

    ``negatives``, when given, holds each pair's hard negatives: ``negatives[i]`` is a list of
    documents (images, for text-to-image pairs) that do not match ``queries[i]``, the same
    number for every pair.
    """

    kind: ClassVar[str] = "pairs"
    queries: list[Any]
    documents: list[Any]
    source: str = "<memory>"
    negatives: list[list[Any]] | None = None

    def __post_init__(self) -> None:
        if self.negatives is None:
            return
        counts = {len(row) for row in self.negatives}
        if len(self.negatives) != len(self.queries) or len(counts) != 1 or 0 in counts:
            raise ValueError(
                f"{self.source}: negatives must hold one non-empty list per pair, all of one length "
                f"(got {len(self.negatives)} lists for {len(self.queries)} pairs, lengths {sorted(counts)})"
            )

    @property
    def num_negatives(self) -> int:
        """Hard negatives per pair (0 without any)."""
        return len(self.negatives[0]) if self.negatives else 0

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class LabeledData:
    """Items with a class label; items with the same label are relevant to each other."""

    kind: ClassVar[str] = "labeled"
    items: list[Any]
    labels: list[str]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.items)

    def label_counts(self) -> dict[str, int]:
        """How many items each label has, in order of first appearance."""
        return dict(Counter(self.labels))


@dataclass
class ScoredData:
    """Pairs with a similarity score (for example STSb's 0 to 5)."""

    kind: ClassVar[str] = "scored"
    a: list[Any]
    b: list[Any]
    scores: list[float]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.a)


@dataclass
class RetrievalData:
    """BEIR/TREC-style: queries, a corpus and graded relevance judgments (qrels)."""

    kind: ClassVar[str] = "retrieval"
    queries: dict[str, Any]
    corpus: dict[str, Any]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.queries)


Data = PairData | LabeledData | ScoredData | RetrievalData
KINDS = ("pairs", "labeled", "scored", "retrieval")


def distinct(items: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """The distinct items, in order of first appearance, and each item's place among them.

    Strings, paths and numbers are the same item when equal; images, arrays and tensors only
    when they are the same object.
    """
    places: dict[Any, int] = {}
    unique, inverse = [], np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        key = (0, item) if isinstance(item, (str, bytes, Path, int, float, np.generic)) else (1, id(item))
        if key not in places:
            places[key] = len(unique)
            unique.append(item)
        inverse[i] = places[key]
    return unique, inverse
