"""Batches of pairs with mined negatives on small data: CISI-like queries with many judged documents each.

The pair sampler never repeats a document in a batch, nor puts in a pair whose document is
another pair's hard negative (nor, without query groups, repeats a query): with few queries
and shared documents this caps what a batch can hold. Batches still fill to ``batch_size``
where the data allows it; an epoch that leaves pairs out says so, and a batch that cannot be
filled names the largest one reached.
"""

from __future__ import annotations

import logging
import random

import pytest

from finetuner import DataError
from finetuner.data import PairData
from finetuner.training.batches import Side, make_sampler

QUERIES, PER_QUERY, POOL, NEGATIVES = 6, 10, 30, 2


def judged_pairs(seed: int = 0) -> PairData:
    """6 queries with 10 judged documents each out of 30 (so documents are shared), and 2 mined negatives per
    pair: documents judged for other queries, as a model ranks them near the query, never the query's own."""
    rng = random.Random(seed)
    judged = {q: rng.sample(range(POOL), PER_QUERY) for q in range(QUERIES)}
    rows = []
    for q, documents in judged.items():
        others = sorted({d for o, ds in judged.items() if o != q for d in ds} - set(documents))
        rows += [(f"query {q}", f"doc {d}", [f"doc {n}" for n in rng.sample(others, NEGATIVES)]) for d in documents]
    return PairData([r[0] for r in rows], [r[1] for r in rows], negatives=[r[2] for r in rows])


def sampler(data: PairData, batch_size: int, groups: bool):
    sides = [Side(data.queries, "text"), Side(data.documents, "text")]
    sides += [Side([row[j] for row in data.negatives], "text") for j in range(NEGATIVES)]
    return make_sampler(data, sides, batch_size=batch_size, samples_per_class=2, seed=0, repeat_queries=groups)


def assert_valid(data: PairData, batch: list[int], groups: bool) -> None:
    documents = [data.documents[i] for i in batch]
    assert len(set(documents)) == len(documents)
    negatives = {n for i in batch for n in data.negatives[i]}
    assert not negatives & set(documents)  # no pair's document is scored as another's negative
    if not groups:
        assert len({data.queries[i] for i in batch}) == len(batch)


@pytest.mark.parametrize(("groups", "batch_size", "least"), [(True, 8, 56), (True, 12, 24), (False, 6, 30)])
def test_batches_fill_to_batch_size_where_the_data_allows(groups, batch_size, least):
    """With query groups (MNRL) a query's pairs share batches; without, a batch holds 6 queries at most."""
    data = judged_pairs()
    batches = list(sampler(data, batch_size, groups))
    assert sum(len(b) for b in batches) >= least  # pairs trained per epoch, of 60
    used = [i for batch in batches for i in batch]
    assert len(used) == len(set(used))
    for batch in batches:
        assert len(batch) == batch_size
        assert_valid(data, batch, groups)


def test_an_epoch_that_leaves_pairs_out_says_how_many(caplog):
    with caplog.at_level(logging.WARNING, logger="finetuner"):
        epoch = len(sampler(judged_pairs(), 6, groups=False))
    assert epoch == 5
    assert "batches of 6 pairs" in caplog.text and "5 of them, 30 of the 60 pairs; the other 30" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="finetuner"):
        sampler(judged_pairs(), 8, groups=True)  # 7 batches of 8: the 4 pairs left are less than a batch
    assert not caplog.text


@pytest.mark.parametrize(("groups", "batch_size", "reached"), [(False, 7, 6), (True, 16, 13)])
def test_a_batch_that_cannot_be_filled_names_the_largest_reached(groups, batch_size, reached):
    with pytest.raises(DataError, match=f"no batch of {batch_size} pairs .* the largest reached holds {reached} pairs"):
        sampler(judged_pairs(), batch_size, groups)
    assert len(sampler(judged_pairs(), reached, groups)) >= 1  # and a batch of that size is filled
