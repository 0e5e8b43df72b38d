"""Batch samplers: class balance, no duplicates, determinism, epochs, DDP shards, resuming."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from finetuner import DataError
from finetuner.data import ClassBalancedBatchSampler, NoDuplicatesBatchSampler, ShuffledBatchSampler

LABELS = [f"class{i % 12}" for i in range(240)]  # 12 classes of 20 items


def epochs(sampler, count: int) -> list[list[list[int]]]:
    out = []
    for epoch in range(count):
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


# --- ClassBalancedBatchSampler --------------------------------------------------------------


def test_balanced_batches_hold_m_items_of_each_class():
    sampler = ClassBalancedBatchSampler(LABELS, batch_size=16, m=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 240 // 16
    for batch in batches:
        assert len(batch) == 16 and len(set(batch)) == 16
        assert sorted(Counter(LABELS[i] for i in batch).values()) == [4, 4, 4, 4]
    assert len({i for batch in batches for i in batch}) == 240  # equal classes: each item once per epoch


def test_batch_size_not_a_multiple_of_m_gives_the_rest_to_one_more_class():
    for batch in ClassBalancedBatchSampler(LABELS, batch_size=10, m=4):
        counts = sorted(Counter(LABELS[i] for i in batch).values())
        assert sum(counts) == 10 and min(counts) >= 2 and max(counts) <= 5


def test_small_classes_give_what_they_have_and_batches_stay_full():
    labels = ["big"] * 40 + ["mid"] * 40 + ["tiny"] * 2 + ["other"] * 30
    sampler = ClassBalancedBatchSampler(labels, batch_size=8, m=4, seed=1)
    batches = epochs(sampler, 3)
    tiny_seen = 0
    for batch in (b for epoch in batches for b in epoch):
        assert len(batch) == 8 and len(set(batch)) == 8
        counts = Counter(labels[i] for i in batch)
        assert counts.get("tiny", 2) == 2
        tiny_seen += "tiny" in counts
    assert tiny_seen > 0


def test_classes_with_a_single_item_are_all_named():
    labels = ["a"] * 10 + ["b"] * 10 + ["lonely"] + ["c"] * 10 + ["solo"]
    with pytest.raises(DataError) as error:
        ClassBalancedBatchSampler(labels, batch_size=8, m=2)
    message = str(error.value)
    assert "2 labels have fewer than 2 items" in message
    assert "'lonely' (1 item)" in message and "'solo' (1 item)" in message and "'a'" not in message
    assert "label_counts()" in message


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"batch_size": 16, "m": 1}, "m .* >= 2"),
        ({"batch_size": 6, "m": 4}, "at least 2\\*m=8"),
        ({"batch_size": 64, "m": 2}, "too few classes"),
        ({"batch_size": 128, "m": 16, "world_size": 2}, "fewer than one batch of 256"),
        ({"batch_size": 8, "rank": 2, "world_size": 2}, "rank must be"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_balanced_argument_errors(kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        ClassBalancedBatchSampler(LABELS, **kwargs)


def test_balanced_is_deterministic_per_seed_and_epoch():
    first = epochs(ClassBalancedBatchSampler(LABELS, 16, seed=7), 2)
    again = epochs(ClassBalancedBatchSampler(LABELS, 16, seed=7), 2)
    assert first == again
    assert first[0] != first[1]  # a new order each epoch
    assert epochs(ClassBalancedBatchSampler(LABELS, 16, seed=8), 1)[0] != first[0]
    chosen = ClassBalancedBatchSampler(LABELS, 16, seed=7)
    chosen.set_epoch(1)
    assert list(chosen) == first[1]


def test_iterating_again_without_set_epoch_repeats_the_epoch():
    sampler = NoDuplicatesBatchSampler(KEYS, 8, seed=3)
    first = list(sampler)
    assert len(sampler) == len(first) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_balanced_drop_last_false_rounds_up():
    assert len(ClassBalancedBatchSampler(LABELS, 16, drop_last=True)) == 15
    assert len(ClassBalancedBatchSampler(LABELS[:230], 16, drop_last=False)) == 15
    assert len(ClassBalancedBatchSampler(LABELS[:230], 16, drop_last=True)) == 14


def test_balanced_shards_are_disjoint_and_reunite_to_the_global_batch():
    ranks = [list(ClassBalancedBatchSampler(LABELS, 8, m=4, seed=2, rank=r, world_size=3)) for r in range(3)]
    whole = ClassBalancedBatchSampler(LABELS, 8, m=4, seed=2, rank=0, world_size=3)
    assert all(len(batches) == len(whole) == 240 // 24 for batches in ranks)
    for step, shards in enumerate(zip(*ranks, strict=True)):
        assert all(len(shard) == 8 for shard in shards)
        joined = [i for shard in shards for i in shard]
        assert len(set(joined)) == 24 and joined == whole._batches()[step]
        classes = [set(LABELS[i] for i in shard) for shard in shards]
        assert not (classes[0] & classes[1]) and not (classes[1] & classes[2])  # 12 classes: enough to differ
        for shard in shards:
            assert set(Counter(LABELS[i] for i in shard).values()) == {4}


# --- NoDuplicatesBatchSampler ----------------------------------------------------------------

# 120 pairs; queries repeat (q0..q29, 4 documents each), and some documents are other pairs' queries
KEYS = [(f"q{i % 30}", f"d{i}" if i % 10 else f"q{(i + 1) % 30}") for i in range(120)]


def values_of(batch):
    return [value for i in batch for value in set(KEYS[i])]


def test_no_batch_repeats_a_query_or_document():
    sampler = NoDuplicatesBatchSampler(KEYS, batch_size=16, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) >= 5
    for batch in batches:
        assert len(batch) == 16
        values = values_of(batch)
        assert len(values) == len(set(values))
    used = [i for batch in batches for i in batch]
    assert len(used) == len(set(used))  # each pair at most once per epoch


def test_no_duplicates_keeps_most_pairs_when_duplicates_are_rare():
    keys = [(f"q{i}", f"d{i // 2}") for i in range(200)]  # each document shared by two queries
    batches = list(NoDuplicatesBatchSampler(keys, batch_size=10, seed=4))
    assert len(batches) >= 18


def test_no_duplicates_is_deterministic_and_changes_with_the_epoch():
    first = epochs(NoDuplicatesBatchSampler(KEYS, 8, seed=5), 2)
    assert first == epochs(NoDuplicatesBatchSampler(KEYS, 8, seed=5), 2)
    assert first[0] != first[1]
    assert list(NoDuplicatesBatchSampler(KEYS, 8, seed=6)) != first[0]


def test_no_duplicates_shards_reunite_to_the_global_batch():
    world = [list(NoDuplicatesBatchSampler(KEYS, 4, seed=1, rank=r, world_size=3)) for r in range(3)]
    global_batches = list(NoDuplicatesBatchSampler(KEYS, 12, seed=1))
    assert [len(batches) for batches in world] == [len(global_batches)] * 3
    for step, shards in enumerate(zip(*world, strict=True)):
        joined = [i for shard in shards for i in shard]
        assert joined == global_batches[step]
        assert len(set(values_of(joined))) == len(values_of(joined))


def test_no_duplicates_errors():
    with pytest.raises(DataError, match="no batch of 4 pairs"):
        NoDuplicatesBatchSampler([("same query", f"d{i}") for i in range(50)], batch_size=4)
    with pytest.raises(DataError, match=r"keys\[1\] holds an unhashable value"):
        NoDuplicatesBatchSampler([("a", "b"), (["x"], "c")], batch_size=1)
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        NoDuplicatesBatchSampler(KEYS[:6], batch_size=4, world_size=2)


# --- ShuffledBatchSampler ---------------------------------------------------------------------


def test_shuffled_batches_cover_every_item_once_and_shard_across_ranks():
    whole = epochs(ShuffledBatchSampler(100, 20, seed=1), 2)
    assert sorted(i for batch in whole[0] for i in batch) == list(range(100))
    assert whole[0] != whole[1]
    ranks = [list(ShuffledBatchSampler(100, 10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole[0]


def test_shuffled_drop_last():
    kept = list(ShuffledBatchSampler(25, 4, seed=0, drop_last=False, world_size=2))
    assert len(kept) == 4 and all(len(batch) == 4 for batch in kept)
    assert len(list(ShuffledBatchSampler(25, 4, seed=0, world_size=2))) == 3
    padded = [list(ShuffledBatchSampler(5, 4, drop_last=False, rank=r, world_size=2)) for r in range(2)]
    assert [len(batches[0]) for batches in padded] == [4, 4]
    assert set(padded[0][0] + padded[1][0]) == set(range(5))
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        ShuffledBatchSampler(5, 4, world_size=2)


# --- all: resuming ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClassBalancedBatchSampler(LABELS, 16, seed=9, rank=1, world_size=2),
        lambda: NoDuplicatesBatchSampler(KEYS, 8, seed=9),
    ],
)
def test_resume_mid_epoch_equals_the_uninterrupted_sequence(make):
    uninterrupted = [batch for epoch in epochs(make(), 3) for batch in epoch]
    interrupted = make()
    seen = list(interrupted)  # epoch 0
    interrupted.set_epoch(1)
    seen += list(islice(iter(interrupted), 2))  # two batches of epoch 1, then a crash
    state = interrupted.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what a training loop calls at the start of the resumed epoch: keeps the position
    seen += list(resumed)
    resumed.set_epoch(2)
    seen += list(resumed)
    assert seen == uninterrupted


def test_state_from_another_shape_is_refused():
    state = ClassBalancedBatchSampler(LABELS, 16).state_dict()
    with pytest.raises(DataError, match="batch_size=16"):
        ClassBalancedBatchSampler(LABELS, 24).load_state_dict(state)
    with pytest.raises(DataError, match="not a sampler state"):
        ClassBalancedBatchSampler(LABELS, 16).load_state_dict({"epoch": 1})
    with pytest.raises(DataError, match="position 99"):
        ClassBalancedBatchSampler(LABELS, 16).load_state_dict({**state, "position": 99})


def test_works_as_a_dataloader_batch_sampler():
    torch = pytest.importorskip("torch")
    sampler = NoDuplicatesBatchSampler(KEYS, 8, seed=2)
    loader = torch.utils.data.DataLoader(list(range(120)), batch_sampler=sampler)
    assert [batch.tolist() for batch in loader] == list(NoDuplicatesBatchSampler(KEYS, 8, seed=2))
