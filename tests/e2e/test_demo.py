"""`finetuner demo`: its help names each demo's model and data; its data sets; each demo end to end on a tiny slice."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest

from finetuner import cli
from finetuner.demo import datasets
from finetuner.demo.run import DEMOS, run_demo


def test_demo_help_names_the_model_and_data_of_every_demo(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse may wrap lines
    for task, words in {
        "text-to-text": ("all-MiniLM-L6-v2", "standard-library docstrings"),
        "image-to-image": ("timm/resnet18", "handwritten digits", "1,797"),
        "text-to-image": ("all-MiniLM-L6-v2+timm/resnet18", "captions"),
    }.items():
        assert f"{task}: model {DEMOS[task].model}" in out
        for word in words:
            assert word in out, f"{word!r} missing from `finetuner demo --help`"


def test_docstring_pairs_are_many_distinct_and_deterministic():
    pairs = datasets.stdlib_docstring_pairs()
    assert len(pairs) >= 500
    assert pairs == datasets.stdlib_docstring_pairs()
    queries = [q for q, _ in pairs]
    assert len(set(queries)) == len(queries)
    assert all(len(q) >= 15 and 60 <= len(d) <= 600 for q, d in pairs)
    assert all("\n" not in q and "\n" not in d for q, d in pairs)


def test_held_out_split_is_disjoint_stable_and_about_one_fifth():
    pairs = datasets.stdlib_docstring_pairs()
    train, held_out = datasets.split_held_out(pairs)
    assert set(train.queries).isdisjoint(held_out.queries)
    assert sorted(
        [*zip(train.queries, train.documents, strict=True), *zip(held_out.queries, held_out.documents, strict=True)]
    ) == sorted(pairs)
    assert 0.15 <= len(held_out) / len(pairs) <= 0.25
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    _, held_out_again = datasets.split_held_out(shuffled)
    assert set(held_out_again.queries) == set(held_out.queries)  # membership depends on the query only, not on order


def test_digits_labeled_is_a_deterministic_disjoint_split_of_all_digits():
    pytest.importorskip("sklearn")
    train, held_out = datasets.digits_labeled()
    assert (len(train), len(held_out)) == (1200, 597)
    assert set(train.labels) == set(held_out.labels) == set(datasets.DIGIT_NAMES)
    for image in train.items[:5] + held_out.items[:5]:
        assert image.shape == (8, 8) and image.dtype == np.uint8
    assert max(int(image.max()) for image in train.items) == 255
    train_images = {image.tobytes() for image in train.items}
    assert not any(image.tobytes() in train_images for image in held_out.items)
    again, _ = datasets.digits_labeled()
    assert [image.tobytes() for image in again.items] == [image.tobytes() for image in train.items]
    assert again.labels == train.labels


def test_digits_captions_name_the_digit_of_their_image():
    pytest.importorskip("sklearn")
    train, held_out = datasets.digits_captioned()
    labeled_train, _ = datasets.digits_labeled()
    assert (len(train), len(held_out)) == (1200, 597)
    assert all(label in caption.split() for caption, label in zip(train.queries, labeled_train.labels, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(train.documents, labeled_train.items, strict=True))
    assert len(set(train.queries)) > 10 * 2  # several templates per digit, not one caption per class


@pytest.fixture
def tiny_demo_data(monkeypatch):
    """Each demo's data cut to a few dozen examples, so a full demo run takes seconds."""
    pairs = datasets.stdlib_docstring_pairs()[:36]
    monkeypatch.setattr(datasets, "stdlib_docstring_pairs", lambda: pairs)
    try:
        images, labels = datasets.digits()
    except ImportError:  # only the image demos need scikit-learn; they skip
        return
    monkeypatch.setattr(datasets, "digits", lambda seed=0: (images[:96], labels[:96]))
    monkeypatch.setattr(datasets, "digits_labeled", functools.partial(datasets.digits_labeled, train_size=72))
    monkeypatch.setattr(datasets, "digits_captioned", functools.partial(datasets.digits_captioned, train_size=48))


@pytest.mark.parametrize("task", list(DEMOS))
def test_demo_runs_end_to_end_and_writes_a_loadable_artifact(task, tiny_demo_data, tmp_path, capsys):
    import finetuner

    if task != "text-to-text":
        pytest.importorskip("sklearn")
    model = run_demo(task, tmp_path / "demo", epochs=1, batch_size=8, samples_per_class=4, verbose=False)
    assert f"demo {task}: {DEMOS[task].model}" in capsys.readouterr().out
    assert model.metrics["before"] and model.metrics["before"].keys() == model.metrics["after"].keys()
    loaded = finetuner.load(tmp_path / "demo" / "model")
    if task == "image-to-image":
        items = datasets.digits_labeled()[1].items[:3]
    else:
        held_out = (
            datasets.split_held_out(datasets.stdlib_docstring_pairs()) if task == "text-to-text" else datasets.digits_captioned()
        )[1]
        items = held_out.queries[:2] + held_out.documents[:2]  # text and images for the two-tower model
    expected = finetuner.encode(model, items, precision="fp32", device="cpu")
    np.testing.assert_allclose(finetuner.encode(loaded, items, precision="fp32", device="cpu"), expected, atol=1e-5)
