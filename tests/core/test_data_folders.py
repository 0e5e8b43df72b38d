"""Image folder trees, and the real data sets in ../shared/data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from finetuner import DataError
from finetuner.data import LabeledData, PairData, ScoredData, load_data


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded at read time")
    return path


def test_folder_tree_gives_labels_from_relative_folders(tmp_path):
    for name in ("Greek/character01/a.png", "Greek/character01/b.PNG", "Greek/character02/c.jpg", "cats/d.jpeg"):
        touch(tmp_path / name)
    touch(tmp_path / "Greek" / "character01" / "notes.txt")
    touch(tmp_path / "Greek" / ".hidden" / "e.png")
    touch(tmp_path / "cats" / ".f.png")
    data = load_data(tmp_path)
    assert isinstance(data, LabeledData)
    assert data.labels == ["Greek/character01", "Greek/character01", "Greek/character02", "cats"]
    assert data.items == [
        tmp_path / "Greek/character01/a.png",
        tmp_path / "Greek/character01/b.PNG",
        tmp_path / "Greek/character02/c.jpg",
        tmp_path / "cats/d.jpeg",
    ]
    assert data.label_counts() == {"Greek/character01": 2, "Greek/character02": 1, "cats": 1}


def test_images_directly_in_the_root_are_skipped_with_a_warning(tmp_path, caplog):
    touch(tmp_path / "loose.png")
    touch(tmp_path / "dogs" / "a.png")
    with caplog.at_level(logging.INFO, logger="finetuner"):
        data = load_data(str(tmp_path))
    assert data.labels == ["dogs"]
    assert "skipped 1 image(s) directly in" in caplog.text


def test_folder_without_labelled_images_is_an_error(tmp_path):
    touch(tmp_path / "loose.png")
    touch(tmp_path / "docs" / "readme.txt")
    with pytest.raises(DataError, match=r"no images found in label folders under .*root/<label>/<image>"):
        load_data(tmp_path)


def test_folder_refuses_other_kinds_and_csv_options(tmp_path):
    touch(tmp_path / "dogs" / "a.png")
    with pytest.raises(DataError, match="image folder"):
        load_data(tmp_path, kind="pairs")
    with pytest.raises(DataError, match="columns="):
        load_data(tmp_path, columns={"item": 0})


# --- real data ------------------------------------------------------------------------------


def test_stsb_dev_without_header_is_scored(shared_data):
    data = load_data(shared_data / "stsb" / "dev.csv")
    assert isinstance(data, ScoredData) and len(data) == 1500
    assert data.a[0] == "A man with a hard hat is dancing."
    assert data.scores[0] == 5.0 and all(0.0 <= score <= 5.0 for score in data.scores)
    assert any("," in text for text in data.a + data.b)  # quoted fields kept whole


def test_omniglot_folder_tree(shared_data):
    data = load_data(shared_data / "omniglot")
    assert isinstance(data, LabeledData) and len(data) == 2720
    counts = data.label_counts()
    assert len(counts) == 136 and set(counts.values()) == {20}
    assert "Greek/character06" in counts
    assert all(
        path.parent.relative_to(shared_data / "omniglot").as_posix() == label
        for path, label in zip(data.items, data.labels, strict=True)
    )


def test_noto_emoji_names_to_images(shared_data):
    data = load_data(shared_data / "noto_emoji" / "emoji_metadata.csv", columns={"text": "name", "image": "image"})
    assert isinstance(data, PairData) and len(data) == 1412
    assert data.queries[0] == "MAHJONG TILE RED DRAGON"
    assert data.documents[0] == (shared_data / "noto_emoji" / "img64" / "1f004.png").absolute()
    assert all(path.is_file() for path in data.documents)


def test_tiny_coco_captions(shared_data):
    data = load_data(shared_data / "tiny_coco" / "captions.csv")
    assert isinstance(data, PairData) and len(data) == 165
    assert data.queries[0] == "A bathroom with no toilets and a red and green bucket."
    assert len(set(data.documents)) == 33 and all(path.suffix == ".jpg" and path.is_file() for path in data.documents)
