"""Batch samplers for metric learning and in-batch negatives; deterministic, resumable, shardable.

The samplers yield lists of indices (use them as a DataLoader's ``batch_sampler``). An
epoch's batches depend only on ``seed`` and ``epoch``, so every rank of a distributed run
computes the same *global* batches (``batch_size * world_size`` indices) and takes its own
slice: losses that gather embeddings across ranks see exactly the global batch.

Epochs follow PyTorch's convention: call :meth:`set_epoch` before each epoch for a new
order; iterating again without it repeats the epoch. ``len()`` is the current epoch's
number of batches.

Resuming: :meth:`state_dict` records seed, epoch and position (batches yielded so far in
the epoch); after :meth:`load_state_dict` the next iteration continues from there (a state
taken at the end of an epoch continues with ``set_epoch(epoch + 1)``). A DataLoader with
workers draws batches ahead of the training step, so a training loop should store the
number of batches it completed: ``{**sampler.state_dict(), "position": done}``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import numpy as np

from finetuner.errors import DataError

logger = logging.getLogger("finetuner")


class ResumableBatchSampler:
    """What the samplers share: seeding, epochs, position, sharding and state."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
            raise DataError(f"rank must be an integer in 0..{world_size - 1} (world_size={world_size}), got {rank!r}")
        self.num_items = num_items
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.position = 0
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        """The epoch's global batches, each ``global_batch_size`` indices long (rank slices in order)."""
        raise NotImplementedError

    def _batches(self) -> list[list[int]]:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._plan(np.random.default_rng([self.seed, self.epoch])))
        return self._cache[1]

    def __len__(self) -> int:
        """Batches in the current epoch (all of it, wherever iteration stands)."""
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self.position >= len(batches):  # a finished epoch runs again, in the same order
            self.position = 0
        start = self.rank * self.batch_size
        while self.position < len(batches):
            batch = batches[self.position][start : start + self.batch_size]
            self.position += 1
            yield batch

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``; the position resets unless it is the current epoch (so a resumed one continues)."""
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "num_items": self.num_items,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` was taken; it must come from a sampler over the same data and batch shape."""
        for name in ("num_items", "batch_size", "world_size"):
            if name in state and state[name] != getattr(self, name):
                raise DataError(
                    f"cannot resume: the sampler state has {name}={state[name]}, this sampler {name}={getattr(self, name)}"
                )
        try:
            seed, epoch, position = int(state["seed"]), int(state["epoch"]), int(state.get("position", 0))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"cannot resume: not a sampler state (from state_dict()): {error!r}") from None
        self.seed, self.epoch, self._cache = seed, epoch, None
        if not 0 <= position <= len(self):
            raise DataError(f"cannot resume: position {position} is outside epoch {self.epoch}'s {len(self)} batches")
        self.position = position


class ClassBalancedBatchSampler(ResumableBatchSampler):
    """Batches of ``batch_size`` items with ``m`` items from each of ``batch_size // m`` classes.

    Classes are drawn in proportion to their items not yet used this epoch, so each item is
    seen about once per epoch; a class used up starts over in a new random order. A class
    with fewer than ``m`` items contributes all it has (never an item twice in a batch) and
    more classes fill the batch; when ``batch_size`` is not a multiple of ``m`` the last class
    gets the remainder. Every batch is full. An epoch has ``len(labels) // (batch_size *
    world_size)`` batches (rounded up with ``drop_last=False``). Classes differ across the
    ranks' slices of a global batch while there are enough of them.

    Raises DataError naming every label with fewer than 2 items (it could never form a
    positive pair), and when there are too few classes to fill a batch.
    """

    def __init__(
        self,
        labels: Sequence[Hashable],
        batch_size: int,
        m: int = 4,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = list(labels)
        super().__init__(len(labels), batch_size, seed, rank, world_size)
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
            raise DataError(f"m (items per class in a batch) must be an integer >= 2, got {m!r}")
        if batch_size < 2 * m:
            raise DataError(f"batch_size={batch_size} must be at least 2*m={2 * m}, so that a batch holds two classes or more")
        members: dict[Hashable, list[int]] = {}
        for index, label in enumerate(labels):
            members.setdefault(label, []).append(index)
        _check_class_sizes(members)
        self.m = int(m)
        self.drop_last = drop_last
        self._members = list(members.values())
        self._sizes = np.array([len(indices) for indices in self._members])
        capacity = int(np.minimum(self._sizes, m).sum())
        if capacity < batch_size:
            raise DataError(
                f"too few classes for batch_size={batch_size} with m={m}: {len(members)} classes give at most {capacity} "
                "items to a batch; lower batch_size or raise m"
            )
        full, rest = divmod(len(labels), self.global_batch_size)
        self._count = full + (1 if rest and not drop_last else 0)
        if self._count == 0:
            raise DataError(f"{len(labels)} items are fewer than one batch of {self.global_batch_size} (batch_size * world_size)")

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        queues = [deque(rng.permutation(indices).tolist()) for indices in self._members]
        fresh = self._sizes.copy()  # items of each class not yet used this epoch
        seen = np.zeros(self.num_items, dtype=bool)
        batches = []
        for _ in range(self._count):
            used = np.zeros(len(self._members), dtype=bool)
            batch: list[int] = []
            for _rank in range(self.world_size):
                batch.extend(self._fill(rng, queues, fresh, seen, used))
            batches.append(batch)
        return batches

    def _fill(
        self, rng: np.random.Generator, queues: list[deque], fresh: np.ndarray, seen: np.ndarray, used: np.ndarray
    ) -> list[int]:
        """One rank's batch: whole class groups, classes not in ``used`` first."""
        remaining, batch, taken = self.batch_size, [], {}
        for c in self._class_order(rng, fresh, used):
            if not remaining:
                break
            size = int(self._sizes[c])
            k = min(self.m, size, remaining)
            if remaining - k == 1:  # avoid leaving a single slot, which would hold a class without a positive
                k = k + 1 if size > k else k - 1 if k > 2 else k
            taken[c] = self._take(rng, queues[c], self._members[c], k, set())
            remaining -= k
        for c, group in taken.items():  # only when small classes ran out: top up the classes in the batch
            extra = min(int(self._sizes[c]) - len(group), remaining)
            if extra > 0:
                group.extend(self._take(rng, queues[c], self._members[c], extra, set(group)))
                remaining -= extra
        for c, group in taken.items():
            used[c] = True
            batch.extend(group)
            for index in group:
                if not seen[index]:
                    seen[index] = True
                    fresh[c] -= 1
        return batch

    def _class_order(self, rng: np.random.Generator, fresh: np.ndarray, used: np.ndarray) -> list[int]:
        """Unused classes with fresh items (drawn in proportion to them), other unused classes, then used ones."""
        ids = np.arange(len(self._members))
        with_fresh = ids[~used & (fresh > 0)]
        race = rng.exponential(size=len(with_fresh)) / fresh[with_fresh]  # the smallest wins: weighted draw without replacement
        order = with_fresh[np.argsort(race, kind="stable")].tolist()
        order += rng.permutation(ids[~used & (fresh == 0)]).tolist()
        order += rng.permutation(ids[used]).tolist()
        return order

    @staticmethod
    def _take(rng: np.random.Generator, queue: deque, members: list[int], k: int, exclude: set[int]) -> list[int]:
        """``k`` distinct items of a class, in its queue's order, refilling the queue with a new shuffle when empty."""
        out: list[int] = []
        skipped: list[int] = []
        while len(out) < k:
            if not queue:
                queue.extend(rng.permutation(members).tolist())
            index = queue.popleft()
            if index in exclude or index in out:
                skipped.append(index)
            else:
                out.append(index)
        queue.extendleft(reversed(skipped))
        return out


def _check_class_sizes(members: dict[Hashable, list[int]]) -> None:
    small = [(label, len(indices)) for label, indices in members.items() if len(indices) < 2]
    if not small:
        return
    shown = ", ".join(f"{label!r} ({count} item)" for label, count in small[:20])
    more = f" and {len(small) - 20} more" if len(small) > 20 else ""
    raise DataError(
        f"{len(small)} label{'s have' if len(small) > 1 else ' has'} fewer than 2 items, so no positive pair can be drawn: "
        f"{shown}{more}. Drop {'them' if len(small) > 1 else 'it'} (keep labels whose LabeledData.label_counts() is >= 2) or add items"
    )


class NoDuplicatesBatchSampler(ResumableBatchSampler):
    """Shuffled batches in which no two pairs share a key value, for in-batch-negative losses.

    ``keys`` has one entry per pair, a tuple of hashable values such as ``(query, document)``
    (a single hashable counts as a one-value tuple). Two pairs conflict when any value of one
    equals any value of the other, so a batch never holds a repeated query, a repeated
    document, or a query that is another pair's document: all would be false negatives.
    ``negatives`` (optional, one tuple per pair: its hard negatives) may repeat among
    themselves, but never meet another pair's key value (that pair's positive would be scored
    as a negative). Batches are filled greedily in shuffled order; a conflicting pair waits for a later
    batch. Only full global batches are yielded: pairs that cannot fill one at the end of the
    epoch are left out of it (a new shuffle next epoch); a warning says how many when they are
    a batch and a tenth of the pairs or more. When not even one batch can be filled, the
    DataError names the largest batch reached.
    """

    def __init__(
        self,
        keys: Sequence[Any],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        negatives: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        keys = list(keys)
        super().__init__(len(keys), batch_size, seed, rank, world_size)
        self._values: list[frozenset] = []
        self._negatives: list[frozenset] = []
        for index, (key, extra) in enumerate(zip(keys, negatives or [()] * len(keys), strict=True)):
            values = tuple(key) if isinstance(key, (tuple, list)) else (key,)
            try:
                self._values.append(frozenset(values))
                self._negatives.append(frozenset(extra))
            except TypeError:
                raise DataError(
                    f"keys[{index}] holds an unhashable value ({', '.join(type(v).__name__ for v in (*values, *extra))}); give hashable keys such as ids or strings"
                ) from None
        if len(keys) < self.global_batch_size:
            raise DataError(f"{len(keys)} pairs are fewer than one batch of {self.global_batch_size} (batch_size * world_size)")
        if len(self) == 0:
            raise DataError(
                f"no batch of {self.global_batch_size} pairs can be formed without a repeated query or document (or a pair "
                f"whose document is another's hard negative): the largest reached holds {self._largest()} pairs; lower "
                "batch_size (batch_size * world_size at most that)"
            )
        used = len(self) * self.global_batch_size
        if len(keys) - used >= max(self.global_batch_size, len(keys) / 10):  # repeats cost a tenth of the pairs or more
            logger.warning(
                "batches of %d pairs without a repeated query or document: an epoch holds %d of them, %d of the %d "
                "pairs; the other %d cannot fill one more batch without a repeat, and wait for the next epoch's "
                "shuffle. A smaller batch_size uses more of them",
                self.global_batch_size,
                len(self),
                used,
                len(keys),
                len(keys) - used,
            )

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        size = self.global_batch_size
        order = rng.permutation(self.num_items).tolist()
        batches: list[list[int]] = []
        waiting: list[int] = []
        position = 0
        while True:
            batch: list[int] = []
            taken: tuple[set, set] = (set(), set())  # the batch's key values, and its hard negatives
            still: list[int] = []
            for seen, index in enumerate(waiting):
                if len(batch) == size:
                    still.extend(waiting[seen:])
                    break
                if not self._take(index, batch, taken):
                    still.append(index)
            waiting = still
            while len(batch) < size and position < len(order):
                index = order[position]
                position += 1
                if not self._take(index, batch, taken):
                    waiting.append(index)
            if len(batch) < size:
                return batches
            batches.append(batch)

    def _largest(self) -> int:
        """The size of the first batch :meth:`_plan` fills without a size limit: the largest batch it can reach."""
        batch: list[int] = []
        taken: tuple[set, set] = (set(), set())
        for index in np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items).tolist():
            self._take(index, batch, taken)
        return len(batch)

    def _take(self, index: int, batch: list[int], taken: tuple[set, set]) -> bool:
        """Add pair ``index`` to ``batch`` unless it conflicts with a pair there (``taken``: their values, their negatives)."""
        values, negatives = self._values[index], self._negatives[index]
        keys, hard = taken
        if not (keys.isdisjoint(values) and hard.isdisjoint(values) and keys.isdisjoint(negatives)):
            return False
        batch.append(index)
        keys.update(values)
        hard.update(negatives)
        return True


class ShuffledBatchSampler(ResumableBatchSampler):
    """Batches of a new random permutation of ``range(num_items)`` each epoch (scored pairs, or any data).

    Every global batch is full: with ``drop_last=True`` the incomplete last one is dropped;
    with ``drop_last=False`` it is completed with items from the start of the epoch's order,
    so each item is seen at least once and every rank gets a full batch.
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int = 0, drop_last: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) or num_items < 1:
            raise DataError(f"num_items must be an integer >= 1, got {num_items!r}")
        super().__init__(int(num_items), batch_size, seed, rank, world_size)
        self.drop_last = drop_last
        if drop_last and num_items < self.global_batch_size:
            raise DataError(f"{num_items} items are fewer than one batch of {self.global_batch_size} (batch_size * world_size)")

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        size = self.global_batch_size
        order = rng.permutation(self.num_items).tolist()
        full, rest = divmod(len(order), size)
        batches = [order[i * size : (i + 1) * size] for i in range(full)]
        if rest and not self.drop_last:
            batches.append(order[full * size :] + list(itertools.islice(itertools.cycle(order), size - rest)))
        return batches
