"""Hugging Face ``datasets`` input: every kind, DatasetDict splits, streaming, errors, fit/evaluate/mine."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

import finetuner
from finetuner import DataError
from finetuner.data import LabeledData, PairData, ScoredData, load_data
from tests.core.helpers import topic_pairs

datasets = pytest.importorskip("datasets", reason="the optional datasets package is not installed")

PAIRS = {"query": ["what is a cat", "red fruit"], "document": ["a small feline", "apple"]}


def test_pairs_from_a_dataset_name_it_in_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="finetuner"):
        data = load_data(datasets.Dataset.from_dict(PAIRS, split="train"))
    assert isinstance(data, PairData) and data.queries == PAIRS["query"] and data.documents == PAIRS["document"]
    assert "<datasets.Dataset split 'train'>" in caplog.text and "kind inferred: pairs" in caplog.text


def test_scored_pairs_with_a_float_label_as_in_sts():
    rows = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [4.5, 0.25]}
    data = load_data(datasets.Dataset.from_dict(rows))
    assert isinstance(data, ScoredData) and data.scores == [4.5, 0.25] and data.a == ["a", "b"]


def test_labeled_items_give_class_label_names():
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features)
    data = load_data(dataset)
    assert isinstance(data, LabeledData) and data.labels == ["neg", "pos", "pos"]
    missing = datasets.Dataset.from_dict({"text": ["bad", "unlabeled"], "label": [0, -1]}, features=features)
    with pytest.raises(DataError, match=r"<datasets.Dataset>, row 1: empty 'label' value \('label'\)"):
        load_data(missing)


@pytest.mark.parametrize("streamed", [False, True])
def test_an_image_column_gives_decoded_images(streamed):
    from PIL import Image

    images = [Image.fromarray(np.full((8, 8, 3), shade, np.uint8)) for shade in (10, 50, 200, 240)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dark", "light"])})
    dataset = datasets.Dataset.from_dict({"image": images, "label": [0, 0, 1, 1]}, features=features)
    data = load_data(dataset.to_iterable_dataset() if streamed else dataset)
    assert data.labels == ["dark", "dark", "light", "light"]
    assert all(isinstance(item, Image.Image) for item in data.items)
    assert [np.asarray(item)[0, 0, 0] for item in data.items] == [10, 50, 200, 240]


def test_hard_negative_columns_and_a_column_mapping():
    rows = {"question": ["q1", "q2"], "answer": ["d1", "d2"], "negative": ["n1", "n2"], "negative_2": ["m1", "m2"]}
    data = load_data(datasets.Dataset.from_dict(rows), columns={"query": "question", "document": "answer"})
    assert data.queries == ["q1", "q2"] and data.negatives == [["n1", "m1"], ["n2", "m2"]]


def test_a_list_column_of_negatives_gives_one_negative_per_item(caplog):
    rows = {**PAIRS, "negatives": [["a dog", "a car"], ["pear", "lemon"]]}
    with caplog.at_level(logging.INFO, logger="finetuner"):
        data = load_data(datasets.Dataset.from_dict(rows))
    assert data.negatives == [["a dog", "a car"], ["pear", "lemon"]] and data.num_negatives == 2
    assert "with 2 hard negatives each" in caplog.text
    assert load_data(rows).negatives == data.negatives  # the same from a dict of columns in memory
    ragged = {**PAIRS, "negatives": [["a dog", "a car"], ["pear"]]}
    with pytest.raises(
        DataError,
        match=r"<datasets.Dataset>, row 1: 'negatives' holds a list of 1, not a list of 2 negatives like the first list",
    ):
        load_data(datasets.Dataset.from_dict(ragged))
    with pytest.raises(
        DataError, match=r"row 0: 'negatives' holds str 'a dog', not a list of 1 negatives like the first list: every pair needs"
    ):
        load_data({**PAIRS, "negatives": ["a dog", ["pear"]]})


def test_a_formatted_dataset_still_gives_plain_values():
    dataset = datasets.Dataset.from_dict({"a": ["x", "y"], "b": ["z", "w"], "score": [1.0, 0.5]}).with_format("numpy")
    data = load_data(dataset, kind="scored")
    assert data.scores == [1.0, 0.5] and all(type(value) is str for value in data.a)


def test_a_split_of_a_dataset_dict_reads_and_the_dict_itself_names_its_splits():
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(PAIRS), "test": datasets.Dataset.from_dict(PAIRS)})
    assert load_data(splits["test"]).queries == PAIRS["query"]
    with pytest.raises(DataError, match=r"DatasetDict holds splits \('train', 'test'\).*dataset\['train'\]"):
        load_data(splits)
    streamed = datasets.IterableDatasetDict({"validation": splits["train"].to_iterable_dataset()})
    with pytest.raises(DataError, match=r"IterableDatasetDict holds splits \('validation'\)"):
        load_data(streamed)


def test_a_streamed_iterable_dataset_is_read_into_memory():
    data = load_data(datasets.Dataset.from_dict(PAIRS).to_iterable_dataset())
    assert data.queries == PAIRS["query"] and data.documents == PAIRS["document"]

    def rows():  # no features known in advance: the columns come from the first row
        yield {"text": "bad", "label": "neg"}
        yield {"text": "good", "label": "pos"}

    assert load_data(datasets.IterableDataset.from_generator(rows)).labels == ["neg", "pos"]


def test_bad_input_names_the_dataset_and_the_column():
    dataset = datasets.Dataset.from_dict(PAIRS, split="train")
    with pytest.raises(
        DataError,
        match=r"columns=\{'query': 'q'\}: no such column in <datasets.Dataset split 'train'>; available: 'query', 'document'",
    ):
        load_data(dataset, columns={"query": "q", "document": "document"})
    scored = datasets.Dataset.from_dict({"a": ["x", "y"], "b": ["z", "w"], "score": ["1", "high"]})
    with pytest.raises(DataError, match=r"<datasets.Dataset>, row 1: score 'high' \('score'\) is not a finite number"):
        load_data(scored)
    with pytest.raises(DataError, match=r"<datasets.Dataset>: no column for the 'label' role of labeled data"):
        load_data(datasets.Dataset.from_dict({"text": ["a"], "id": ["1"], "other": ["b"]}), kind="labeled")
    with pytest.raises(DataError, match="<datasets.Dataset> has no rows"):
        load_data(datasets.Dataset.from_dict({"query": [], "document": []}))


def test_fit_evaluate_and_mine_take_datasets():
    rows = topic_pairs(40)
    dataset = datasets.Dataset.from_dict({"query": [q for q, _ in rows], "document": [d for _, d in rows]})
    model = finetuner.fit(
        "dummy-text",
        dataset.select(range(32)),
        dataset.select(range(32, 40)),
        epochs=1,
        batch_size=8,
        output_dir=None,
        verbose=False,
    )
    assert "recall@5" in finetuner.evaluate(model, dataset.select(range(32, 40)), k=5)
    mined = finetuner.mine_hard_negatives(model, dataset, num_negatives=1, progress=False)
    assert len(mined) == len(rows) and all(len(row) == 3 for row in mined)


def test_finetuner_never_imports_datasets_unless_given_one():
    code = "import sys, finetuner; finetuner.load_data([('a', 'b')]); print('datasets' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
