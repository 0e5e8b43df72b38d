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
from finetuner.models.embedding import EmbeddingModel
from finetuner.models.tower import Augmentation
from finetuner.training.augment import item_seeds


@dataclass
class Side:
    """One side of the training data (queries, documents, items, ...) and the tower that embeds it."""

    items: list[Any]
    modality: str


@dataclass
class Batch:
    """A collated batch: per side the dataset indices and the preprocessed features (None when cached)."""

    indices: list[int]
    features: list[dict[str, torch.Tensor] | None]
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sides_of(data: PairData | LabeledData | ScoredData, model: EmbeddingModel) -> list[Side]:
    """The sides of the data, each routed to a tower: two-tower models take text left, image right."""
    if isinstance(data, LabeledData):
        return [Side(data.items, _single(model))]
    left, right = (data.queries, data.documents) if isinstance(data, PairData) else (data.a, data.b)
    if len(model.towers) == 1:
        return [Side(left, _single(model)), Side(right, _single(model))]
    return [Side(left, "text"), Side(right, "image")]


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
) -> ResumableBatchSampler:
    """The batch sampler for the data's kind: ``samples_per_class`` items of each class in a batch of labeled
    data, no repeated query or document in a batch of pairs (in-batch negatives), shuffled scored pairs."""
    if isinstance(data, LabeledData):
        return ClassBalancedBatchSampler(
            data.labels, batch_size, m=samples_per_class, seed=seed, rank=rank, world_size=world_size
        )
    if isinstance(data, PairData):
        keys = [(item_key(q), item_key(d)) for q, d in zip(sides[0].items, sides[1].items, strict=True)]
        return NoDuplicatesBatchSampler(keys, batch_size, seed=seed, rank=rank, world_size=world_size)
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
    ) -> None:
        self.towers = {side.modality: model.tower(side.modality) for side in sides}
        self.sides = sides
        self.label_ids = label_ids
        self.scores = scores
        self.cached = cached
        self.augmentations = augmentations or {}
        self.seed = seed
        self.epoch = 0

    def __call__(self, indices: list[int]) -> Batch:
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
        )


class IndexDataset(torch.utils.data.Dataset):
    """The DataLoader's dataset: it yields indices; the collator reads and preprocesses the items."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index
