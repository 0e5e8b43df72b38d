"""Hugging Face ``datasets`` objects -> a :class:`Table`; ``datasets`` is imported only when given one of its objects."""

from __future__ import annotations

from typing import Any

from finetuner.data.rows import Table
from finetuner.errors import DataError

ROW_TYPES = ("Dataset", "IterableDataset")
SPLIT_TYPES = ("DatasetDict", "IterableDatasetDict")


def _datasets_class(source: Any) -> str | None:
    """The name of the ``datasets`` class ``source`` is (or derives from), told by the class's module; None for others."""
    return next((cls.__name__ for cls in type(source).__mro__ if cls.__module__.split(".")[0] == "datasets"), None)


def is_hf_dataset(source: Any) -> bool:
    """Whether ``source`` is a ``datasets`` Dataset, IterableDataset or one of their dicts of splits (nothing is imported)."""
    return _datasets_class(source) in (*ROW_TYPES, *SPLIT_TYPES)


def table_from_hf_dataset(source: Any) -> Table:
    """Rows of a ``Dataset`` or a streamed ``IterableDataset`` (read to its end); a ``DatasetDict`` is an error naming its splits.

    ``ClassLabel`` columns give their class names, not their integer ids (-1, no label, is a missing value).
    """
    kind = _datasets_class(source)
    if kind in SPLIT_TYPES:
        splits = list(source)
        example = f"e.g. dataset[{splits[0]!r}]" if splits else "but it has none"
        raise DataError(f"a {kind} holds splits ({', '.join(map(repr, splits))}), not rows: pass one split, {example}")
    name = _describe(source)
    source = source.with_format(None)  # plain Python values, whatever format the caller set
    features = source.features or {}
    if kind == "Dataset":  # read column by column, features decoded (an Image column gives PIL images)
        columns = source[:]
        names = list(columns)
        rows = [list(row) for row in zip(*columns.values(), strict=True)]
    else:  # streamed: every row is read into memory
        records = list(source)
        names = list(features) or (list(records[0]) if records else [])
        rows = [_row(record, names, name, number) for number, record in enumerate(records)]
    if not names:
        raise DataError(f"{name} has no columns")
    for index, column in enumerate(names):
        feature = features.get(column)
        if type(feature).__name__ == "ClassLabel":
            for row in rows:
                row[index] = feature.int2str(row[index]) if row[index] is not None and row[index] >= 0 else None
    return Table(rows=rows, origins=list(range(len(rows))), source=name, names=[str(n) for n in names], unit="row")


def _describe(source: Any) -> str:
    """How messages name the data set: its class, name and split where known."""
    info = getattr(source, "info", None)
    parts = [f"datasets.{type(source).__name__}"]
    if getattr(info, "dataset_name", None):
        parts.append(repr(info.dataset_name))
    if getattr(source, "split", None) is not None:
        parts.append(f"split {str(source.split)!r}")
    return f"<{' '.join(parts)}>"


def _row(record: Any, names: list[str], source: str, number: int) -> list[Any]:
    if not isinstance(record, dict) or set(record) != set(names):
        got = sorted(map(str, record)) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{source}, row {number}: expected the columns {names}, got {got}")
    return [record[column] for column in names]
