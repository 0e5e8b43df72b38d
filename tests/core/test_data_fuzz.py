"""Readers fed random bytes, quoting and encodings raise only DataError (or succeed)."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetuner import DataError
from finetuner.data import PairData, load_data

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FIELD = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(',;\t"\n\r .png'), max_size=12
)
ROWS = st.integers(1, 4).flatmap(
    lambda width: st.lists(st.lists(FIELD, min_size=width, max_size=width) | st.lists(FIELD, max_size=5), max_size=6)
)
QUOTING = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252", "utf-32"])
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["pairs", "labeled", "scored"]),
        "header": st.booleans(),
        "delimiter": st.sampled_from([",", "\t", ";"]),
        "encoding": ENCODINGS,
        "columns": st.dictionaries(
            st.sampled_from(["query", "document", "item", "label", "a", "b", "score"]),
            st.integers(-1, 4) | st.sampled_from(["query", "text", "x"]),
            max_size=3,
        ),
    },
)


def read_or_data_error(path: Path, **options) -> object:
    try:
        return load_data(path, **options)
    except DataError as error:
        assert str(error)
        return error


@SETTINGS
@given(raw=st.binary(max_size=300), options=OPTIONS, suffix=st.sampled_from([".csv", ".tsv"]))
def test_random_bytes(raw, options, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(raw)
        read_or_data_error(path, **options)


@SETTINGS
@given(rows=ROWS, quoting=QUOTING, encoding=ENCODINGS, options=st.just({}) | OPTIONS, say_encoding=st.booleans())
def test_random_quoting_and_encodings(rows, quoting, encoding, options, say_encoding):
    if say_encoding:
        options = {**options, "encoding": encoding}
    buffer = io.StringIO(newline="")
    csv.writer(buffer, quoting=quoting).writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        try:
            path.write_bytes(buffer.getvalue().encode(encoding))
        except UnicodeEncodeError:
            path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))
        read_or_data_error(path, **options)


TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")) | st.sampled_from(',"\n '),
    min_size=1,
    max_size=15,
)


@SETTINGS
@given(pairs=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=8), quoting=QUOTING)
def test_written_pairs_read_back_unchanged(pairs, quoting):
    pairs = [(q, d) for q, d in pairs if q.strip() and d.strip()] or [("q", "d")]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=quoting)
    writer.writerow(["query", "document"])
    writer.writerows(pairs)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        data = load_data(path)
    assert isinstance(data, PairData)
    assert list(zip(data.queries, data.documents, strict=True)) == pairs


NAME = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=12
)
EXTENSION = st.sampled_from([".png", ".JPG", ".txt", "", ".webp", ".tif"])
TREE = st.lists(st.tuples(st.lists(NAME, max_size=3), NAME, EXTENSION, st.binary(max_size=16)), max_size=6)


@settings(SETTINGS, max_examples=60)
@given(tree=TREE)
def test_random_image_folders(tree):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for parts, name, extension, content in tree:
            if any(part in (".", "..") for part in [*parts, name]):
                continue
            path = root.joinpath(*parts, name + extension)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            except OSError:  # a name the file system refuses, or a file where a folder should go
                continue
        result = read_or_data_error(root)
        if not isinstance(result, DataError):
            for item, label in zip(result.items, result.labels, strict=True):
                assert item.is_file() and item.parent.relative_to(root).as_posix() == label
