"""Turning training data into batches: which sampler, which tower each side goes to, collation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from finetuner.data.samplers import (
    ClassBalancedBatchSampler,
    NoDuplicatesBatchSampler,
    ResumableBatchSampler,
    ShuffledBatchSampler,
)
from finetuner.data.types import LabeledData, PairData, ScoredData
from finetuner.losses.cached import mini_batches
from finetuner.models.embedding import EmbeddingModel
from finetuner.models.tower import Augmentation
from finetuner.prompts import prefixed, resolve_prompt, side_prompt
from finetuner.training.augment import item_seeds


@dataclass
class Side:
    """One side of the training data (queries, documents, items, ...) and the tower that embeds it."""

    items: list[Any]
    modality: str


@dataclass
class Batch:
    """A collated batch: per side the dataset indices and the preprocessed features (None when cached).

    A batch cut into mini-batches for GradCache has no features of its own: ``parts`` holds one
    collated batch per mini-batch instead. ``groups`` numbers each pair's query (pairs whose
    query repeats in a batch).
    """

    indices: list[int]
    features: list[dict[str, torch.Tensor] | None]
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    parts: list[Batch] = field(default_factory=list)


def sides_of(data: PairData | LabeledData | ScoredData, model: EmbeddingModel) -> list[Side]:
    """The sides of the data, each routed to a tower: two-tower models take text left, image right.

    Pairs with hard negatives have one more side per negative column (pair ``i``'s ``j``-th
    negative is item ``i`` of side ``2 + j``), embedded by the documents' tower. Texts get the
    model's prompts as :func:`finetuner.evaluate` gives them (see :mod:`finetuner.prompts`).
    """
    if isinstance(data, LabeledData):
        return [Side(prefixed(data.items, resolve_prompt(model)), _single(model))]
    left, right = (data.queries, data.documents) if isinstance(data, PairData) else (data.a, data.b)
    negatives = data.negatives if isinstance(data, PairData) and data.negatives else []
    columns = [[row[j] for row in negatives] for j in range(len(negatives[0]) if negatives else 0)]
    # queries get the model's query prompt, documents and negatives its document prompt; scored pairs the default prompt
    pair = isinstance(data, PairData)
    query, document = (side_prompt(model, "query"), side_prompt(model, "document")) if pair else (resolve_prompt(model),) * 2
    left = prefixed(left, query)
    right, *columns = (prefixed(items, document) for items in (right, *columns))
    if len(model.towers) == 1:
        return [Side(items, _single(model)) for items in (left, right, *columns)]
    return [Side(left, "text"), *(Side(items, "image") for items in (right, *columns))]


def _single(model: EmbeddingModel) -> str:
    if len(model.towers) != 1:
        raise ValueError("labeled data needs a one-tower model; this model has towers " + ", ".join(model.modalities))
    return model.modalities[0]


def make_sampler(
    data: PairData | LabeledData | ScoredData,
    sides: list[Side],
    *,
    batch_size: int,
    samples_per_class: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    repeat_queries: bool = False,
) -> ResumableBatchSampler:
    """The batch sampler for the data's kind: ``samples_per_class`` items of each class in a batch of labeled
    data, no repeated query or document in a batch of pairs (in-batch negatives), shuffled scored pairs.

    ``repeat_queries`` lets a query's several pairs share a batch (for a loss told which pairs share a
    query, so that their documents are not each other's negatives); a document still never repeats.
    """
    if isinstance(data, LabeledData):
        return ClassBalancedBatchSampler(
            data.labels, batch_size, m=samples_per_class, seed=seed, rank=rank, world_size=world_size
        )
    if isinstance(data, PairData):  # hard negatives (and repeatable queries) may recur, never as another pair's key
        keys = [
            (item_key(d),) if repeat_queries else (item_key(q), item_key(d))
            for q, d in zip(sides[0].items, sides[1].items, strict=True)
        ]
        recurring = sides[2:] if not repeat_queries else [sides[0], *sides[2:]]
        negatives = [tuple(item_key(side.items[i]) for side in recurring) for i in range(len(data))] if recurring else None
        return NoDuplicatesBatchSampler(keys, batch_size, seed=seed, rank=rank, world_size=world_size, negatives=negatives)
    return ShuffledBatchSampler(len(data), batch_size, seed=seed, rank=rank, world_size=world_size)


def item_key(item: Any) -> Any:
    """A hashable identity for an item, to keep duplicates out of in-batch negatives."""
    try:
        hash(item)
        return item
    except TypeError:
        return id(item)


class Collator:
    """Preprocesses a batch of dataset indices with each side's tower (picklable for DataLoader workers).

    A side whose modality has an augmentation is augmented instead, each item from a seed of
    ``seed``, ``epoch`` (set before each epoch's DataLoader starts its workers), the side and its index.
    With ``mini_batch_size``, a larger batch is collated as mini-batches of that size (its ``parts``), for GradCache;
    ``groups`` (one integer per item) become each batch's ``groups``.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        sides: list[Side],
        label_ids: list[int] | None,
        scores: list[float] | None,
        cached: bool,
        augmentations: dict[str, Augmentation] | None = None,
        seed: int = 0,
        mini_batch_size: int | None = None,
        groups: list[int] | None = None,
    ) -> None:
        self.towers = {side.modality: model.tower(side.modality) for side in sides}
        self.sides = sides
        self.label_ids = label_ids
        self.scores = scores
        self.cached = cached
        self.augmentations = augmentations or {}
        self.seed = seed
        self.epoch = 0
        self.mini_batch_size = mini_batch_size
        self.groups = groups

    def __call__(self, indices: list[int]) -> Batch:
        if self.mini_batch_size is None or len(indices) <= self.mini_batch_size:
            return self.collate(indices)
        parts = [self.collate(indices[part]) for part in mini_batches(len(indices), self.mini_batch_size)]
        return Batch(
            indices=list(indices),
            features=[],
            labels=None if self.label_ids is None else torch.cat([part.labels for part in parts]),
            scores=None if self.scores is None else torch.cat([part.scores for part in parts]),
            groups=None if self.groups is None else torch.cat([part.groups for part in parts]),
            parts=parts,
        )

    def collate(self, indices: list[int]) -> Batch:
        """One batch of ``indices``, never cut into mini-batches."""
        features: list[dict[str, torch.Tensor] | None] = []
        for number, side in enumerate(self.sides):
            items = [side.items[i] for i in indices]
            augment = self.augmentations.get(side.modality)
            if self.cached:
                features.append(None)
            elif augment is not None:
                features.append(augment(items, item_seeds(self.seed, self.epoch, number, indices)))
            else:
                features.append(self.towers[side.modality].preprocess(items))
        return Batch(
            indices=list(indices),
            features=features,
            labels=torch.tensor([self.label_ids[i] for i in indices]) if self.label_ids is not None else None,
            scores=torch.tensor([self.scores[i] for i in indices], dtype=torch.float32) if self.scores is not None else None,
            groups=torch.tensor([self.groups[i] for i in indices]) if self.groups is not None else None,
        )


class IndexDataset(torch.utils.data.Dataset):
    """The DataLoader's dataset: it yields indices; the collator reads and preprocesses the items."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index
