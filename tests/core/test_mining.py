"""mine_hard_negatives(): the chunked exact top-k, false-negative filters, sampling, errors, the CSV."""

from __future__ import annotations

import csv
import logging

import pytest
import torch

import finetuner
from finetuner.cli import main
from finetuner.errors import DataError
from finetuner.mining import _top_k, mine_hard_negatives
from tests.core.helpers import pairs


class LookupTower(finetuner.Tower):
    """Each text's embedding is a fixed vector from a table (its position in ``texts``): scores set by hand."""

    modality = "text"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        super().__init__()
        self.texts = list(vectors)
        self.output_dim = len(next(iter(vectors.values())))
        self.table = torch.nn.Parameter(torch.tensor(list(vectors.values()), dtype=torch.float32))

    def preprocess(self, items):
        return {"ids": torch.tensor([self.texts.index(" ".join(item.split())) for item in items])}

    def forward(self, features):
        return self.table[features["ids"]]


def lookup_model(vectors: dict[str, list[float]]) -> finetuner.EmbeddingModel:
    return finetuner.EmbeddingModel({"text": LookupTower(vectors)})


# One query "q" and its positive "p" (score 0.8), then documents at falling cosine scores.
SCORES = {"p": 0.8, "d90": 0.9, "d79": 0.79, "d70": 0.7, "d60": 0.6, "d50": 0.5, "d40": 0.4, "d30": 0.3}


def scored_model() -> finetuner.EmbeddingModel:
    """Query "q" is (1, 0) and each document (s, sqrt(1 - s^2)), so its cosine with "q" is s."""
    vectors = {"q": [1.0, 0.0], "other query": [0.0, 1.0]}
    vectors.update({name: [score, (1 - score**2) ** 0.5] for name, score in SCORES.items()})
    return lookup_model(vectors)


def mine(pairs_, corpus=None, **options):
    return mine_hard_negatives(scored_model(), pairs_, corpus, progress=False, **options)


CORPUS = list(SCORES)


def test_top_negatives_are_the_best_candidates_best_first():
    rows = mine([("q", "p")], CORPUS, num_negatives=3)
    assert rows == [("q", "p", "d90", "d79", "d70")]


def test_margins_skip_candidates_close_to_the_positive():
    # absolute: skip score > 0.8 - 0.05 (d90, d79)
    assert mine([("q", "p")], CORPUS, num_negatives=2, margin=0.05) == [("q", "p", "d70", "d60")]
    # relative: skip score > 0.8 - 0.8 * 0.2 = 0.64 (d90, d79, d70)
    assert mine([("q", "p")], CORPUS, num_negatives=2, relative_margin=0.2) == [("q", "p", "d60", "d50")]
    # margin 0: a candidate scoring above the positive is skipped, one below kept
    assert mine([("q", "p")], CORPUS, num_negatives=1, margin=0.0) == [("q", "p", "d79")]


def test_rank_range_skips_the_top_ranks_and_bounds_the_window():
    assert mine([("q", "p")], CORPUS, num_negatives=2, rank_range=(2, 4)) == [("q", "p", "d70", "d60")]
    # the window is ranked before the margins: ranks 0..2 are d90, d79, d70; the margin leaves d70 only
    with pytest.raises(DataError, match="no pair has 2 negatives"):
        mine([("q", "p")], CORPUS, num_negatives=2, rank_range=(0, 3), margin=0.05)


def test_positives_duplicates_of_them_and_the_query_itself_are_never_negatives():
    corpus = ["d90", "p", " p ", "q", "d79", "d70"]  # " p " is the positive with other spacing
    rows = mine([("q", "p"), ("q", "d90")], corpus, num_negatives=2)  # "q" has two positives
    assert rows == [("q", "p", "d79", "d70"), ("q", "d90", "d79", "d70")]


def test_random_sampling_is_seeded_and_draws_from_the_window():
    many = [(f"alpha question {i}", f"notes on ahpla {i}") for i in range(30)] + pairs(60)
    model = finetuner.build_model("dummy-text")
    first = mine_hard_negatives(model, many, sampling="random", seed=1, num_negatives=2, progress=False)
    again = mine_hard_negatives(model, many, sampling="random", seed=1, num_negatives=2, progress=False)
    other = mine_hard_negatives(model, many, sampling="random", seed=2, num_negatives=2, progress=False)
    top = mine_hard_negatives(model, many, num_negatives=20, rank_range=(0, 20), progress=False)
    assert first == again and first != other
    window = {row[0]: set(row[2:]) for row in top}
    for row in first:
        assert set(row[2:]) <= window[row[0]] and row[1] not in row[2:]


def test_the_chunked_search_equals_one_exact_top_k(monkeypatch):
    monkeypatch.setattr("finetuner.mining.CORPUS_CHUNK", 7)
    g = torch.Generator().manual_seed(0)
    queries, corpus = torch.randn(9, 4, generator=g), torch.randn(40, 4, generator=g)
    excluded = [[0, 8, 39]] + [[]] * 8
    scores, indices = _top_k(queries, corpus, 10, excluded)
    full = queries @ corpus.T
    full[0, [0, 8, 39]] = -torch.inf
    expected = torch.topk(full, 10, dim=1)
    torch.testing.assert_close(scores, expected.values)
    assert torch.equal(indices, expected.indices)


def test_the_margins_compare_with_each_pairs_own_positive():
    rows = mine([("q", "p"), ("q", "d50")], CORPUS, num_negatives=1, margin=0.0)  # positives score 0.8 and 0.5
    assert rows == [("q", "p", "d79"), ("q", "d50", "d40")]  # neither positive is ever the other's negative


def test_pairs_left_short_are_dropped_with_a_warning(caplog):
    # q's positive a outscores both corpus documents; for q2, c outscores its positive d (margin 0 skips it)
    vectors = {"q": [1.0, 0.0], "q2": [0.0, 1.0], "a": [0.9, 0.1], "b": [0.8, 0.2], "c": [0.1, 0.9], "d": [0.2, 0.8]}
    model = lookup_model(vectors)
    with caplog.at_level(logging.WARNING, logger="finetuner"):
        rows = mine_hard_negatives(model, [("q", "a"), ("q2", "d")], ["b", "c"], num_negatives=2, margin=0.0, progress=False)
    assert rows == [("q", "a", "b", "c")]
    assert "1 of 2 pairs had fewer than 2 negatives" in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"corpus": ["only one"]}, "corpus holds 1 distinct document"),
        ({"corpus": ["same", " same"]}, "corpus holds 1 distinct document"),
        ({"num_negatives": 9}, "num_negatives=9 is larger than the corpus \\(8 distinct documents\\)"),
        ({"num_negatives": 0}, "num_negatives must be a positive integer"),
        ({"rank_range": (6, 8), "num_negatives": 3}, "rank_range=\\(6, 8\\) leaves 2 ranks"),
        ({"rank_range": (3, 3)}, "0 <= low < high"),
        ({"sampling": "hardest"}, "sampling must be one of 'top', 'random'"),
        ({"margin": "0.1"}, "margin must be a number"),
    ],
)
def test_bad_arguments_are_named(options, message):
    corpus = options.pop("corpus", CORPUS)
    with pytest.raises(DataError, match=message):
        mine([("q", "p")], corpus, **options)


def test_pairs_with_fewer_than_two_documents_are_refused():
    with pytest.raises(DataError, match="the pairs' documents \\(corpus=None\\) holds 1"):
        mine([("q", "p"), ("other query", "p")])


def test_output_writes_a_csv_with_negative_columns(tmp_path):
    out = tmp_path / "mined" / "train.csv"
    rows = mine([("q", "p"), ("other query", "d30")], CORPUS, num_negatives=2, output=out)
    with out.open(newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["query", "document", "negative", "negative_2"]
    assert [tuple(row) for row in written[1:]] == rows


def test_images_in_memory_cannot_go_to_a_csv(tmp_path):
    import numpy as np

    images = [np.full((16, 16, 3), i * 20, dtype=np.uint8) for i in range(6)]
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=8)
    captions = [f"picture {i}" for i in range(6)]
    rows = mine_hard_negatives(model, list(zip(captions, images)), num_negatives=2, progress=False)
    assert len(rows) == 6 and all(len(row) == 4 for row in rows)
    with pytest.raises(DataError, match="a CSV holds texts and image paths only"):
        mine_hard_negatives(model, list(zip(captions, images)), num_negatives=2, progress=False, output=tmp_path / "x.csv")


def test_results_do_not_depend_on_the_query_block(monkeypatch):
    model = finetuner.build_model("dummy-text")
    options = {"sampling": "random", "num_negatives": 3, "progress": False}
    whole = mine_hard_negatives(model, pairs(50), **options)
    monkeypatch.setattr("finetuner.mining.QUERY_BLOCK", 7)
    monkeypatch.setattr("finetuner.mining.CORPUS_CHUNK", 5)
    assert mine_hard_negatives(model, pairs(50), **options) == whole


def test_cli_mine_writes_the_csv(tmp_path, capsys):
    data, corpus = tmp_path / "pairs.csv", tmp_path / "corpus.txt"
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows([("anchor", "positive"), *pairs(30)])
    corpus.write_text("\n".join(f"notes on extra {i}" for i in range(20)))
    main(["mine", "dummy-text", str(data), "--corpus", str(corpus), "-o", str(tmp_path / "out.csv"), "--num-negatives", "2"])
    assert "wrote 30 pairs with 2 negatives each" in capsys.readouterr().out
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["query", "document", "negative", "negative_2"] and len(rows) == 31
    assert all(row[2].startswith("notes on extra") for row in rows[1:])


def test_the_model_is_an_artifact_folder_or_a_name_as_encode_takes_it(tmp_path):
    model = finetuner.build_model("dummy-text")
    finetuner.save(model, tmp_path / "model")
    from_folder = mine_hard_negatives(tmp_path / "model", pairs(12), num_negatives=2, progress=False)
    assert from_folder == mine_hard_negatives(model, pairs(12), num_negatives=2, progress=False)
    with pytest.raises(finetuner.ArtifactError, match="is not a finetuner artifact"):
        mine_hard_negatives(tmp_path, pairs(12), progress=False)
    with pytest.raises(finetuner.UnknownNameError, match="no-such-model"):
        mine_hard_negatives("no-such-model", pairs(12), progress=False)
