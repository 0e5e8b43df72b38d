"""In-memory data (lists of tuples or dicts, dicts of columns, DataFrames, Hugging Face datasets) -> a :class:`Table`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from finetuner.data.hf_datasets import is_hf_dataset, table_from_hf_dataset
from finetuner.data.rows import Table
from finetuner.errors import DataError


def is_dataframe(source: Any) -> bool:
    """Duck-typed pandas (or pandas-like) DataFrame check; pandas itself is never imported."""
    return hasattr(source, "columns") and hasattr(source, "to_dict") and not isinstance(source, Mapping)


def table_from_memory(source: Any) -> Table:
    """Rows from a DataFrame, a Hugging Face ``Dataset``, a dict of columns, or a list of tuples/lists/dicts."""
    if is_hf_dataset(source):  # before the Mapping check: a DatasetDict is a dict
        return table_from_hf_dataset(source)
    if is_dataframe(source):
        try:
            columns = source.to_dict(orient="list")
        except Exception as error:  # a foreign object: report it as bad input, whatever went wrong
            raise DataError(f"cannot read the DataFrame's columns: {error}") from None
        return _from_columns(columns, "<DataFrame>")
    if isinstance(source, Mapping):
        return _from_columns(source, "<dict>")
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        raise DataError(
            f"cannot read data from a {type(source).__name__}: give a CSV path, an image folder, a list of tuples "
            "or dicts, a dict of columns, a DataFrame, a datasets.Dataset, or PairData/LabeledData/ScoredData"
        )
    return _from_rows(list(source), "<list>")


def _from_columns(columns: Mapping[Any, Any], source: str) -> Table:
    if not columns:
        raise DataError(f"{source} has no columns")
    values: dict[str, list[Any]] = {}
    for name, column in columns.items():
        if isinstance(column, (str, bytes)) or not isinstance(column, Iterable):
            raise DataError(f"{source}: column {name!r} must be a list of values, got {type(column).__name__}")
        values[str(name)] = list(column)
    lengths = {name: len(column) for name, column in values.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source}: columns have different lengths: {', '.join(f'{k!r}: {v}' for k, v in lengths.items())}")
    size = next(iter(lengths.values()))
    rows = [[column[i] for column in values.values()] for i in range(size)]
    return Table(rows=rows, origins=list(range(size)), source=source, names=list(values), unit="row")


def _from_rows(rows: list[Any], source: str) -> Table:
    if not rows:
        raise DataError(f"{source} is empty")
    first = rows[0]
    if isinstance(first, Mapping):
        names = list(first)
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping) or set(row) != set(names):
                got = sorted(map(str, row)) if isinstance(row, Mapping) else type(row).__name__
                raise DataError(f"{source}, row {index}: expected a dict with keys {names}, got {got}")
        return Table(
            rows=[[row[name] for name in names] for row in rows],
            origins=list(range(len(rows))),
            source=source,
            names=[str(name) for name in names],
            unit="row",
        )
    for index, row in enumerate(rows):
        if not isinstance(row, (tuple, list)):
            raise DataError(
                f"{source}, row {index}: expected a tuple like (query, document), (item, label) or (a, b, score), "
                f"got {type(row).__name__}"
            )
        if len(row) != len(first):
            raise DataError(f"{source}, row {index}: {len(row)} values, but row 0 has {len(first)}")
    return Table(rows=[list(row) for row in rows], origins=list(range(len(rows))), source=source, unit="row")
