"""load_data(): one entry point for every input format."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetuner.data.csvfile import read_table_file
from finetuner.data.folders import read_image_folder
from finetuner.data.memory import table_from_memory
from finetuner.data.rows import to_data
from finetuner.data.types import KINDS, LabeledData, PairData, RetrievalData, ScoredData
from finetuner.errors import DataError


def load_data(
    source: Any,
    *,
    kind: str | None = None,
    columns: Mapping[str, str | int] | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    image_dir: str | os.PathLike | None = None,
) -> PairData | LabeledData | ScoredData | RetrievalData:
    """Read training or evaluation data into :class:`PairData`, :class:`LabeledData` or :class:`ScoredData`.

    ``source`` is a CSV/TSV path, an image folder tree ``root/<label>/<image>``, a list of
    ``(query, document)`` / ``(a, b, score)`` / ``(item, label)`` tuples or of dicts, a dict
    of columns, a pandas DataFrame, a Hugging Face ``datasets.Dataset`` (or one split of a
    ``DatasetDict``; a streamed ``IterableDataset`` is read into memory), or an already-built
    data object (returned as is).

    ``kind`` (``"pairs"``, ``"labeled"``, ``"scored"``) is inferred when None, from column
    names or shape, and the log (logger ``"finetuner"``) says what was inferred.
    ``columns`` maps our roles (query/document, item/label, a/b/score, or aliases such as
    text/image, anchor/positive, sentence1/sentence2) to column names or 0-based indices.
    ``header`` forces whether a CSV's first row names the columns (sniffed when None);
    ``delimiter`` defaults to a tab for ``.tsv`` and a comma otherwise; ``encoding``
    defaults to UTF-8 (UTF-16 with a byte-order mark is detected). Relative image paths in
    a CSV start from ``image_dir``, by default the CSV's folder (or the one subfolder of it
    where the first image is found). Every problem raises :class:`finetuner.DataError`
    naming the file and line (or row).
    """
    if kind is not None and kind not in KINDS:
        raise DataError(f"kind={kind!r} is not a data kind; use one of {', '.join(map(repr, KINDS))}")
    if isinstance(source, (PairData, LabeledData, ScoredData, RetrievalData)):
        if kind is not None and kind != source.kind:
            raise DataError(f"kind={kind!r} was asked for, but the data given is {type(source).__name__} (kind {source.kind!r})")
        return source
    if kind == "retrieval":
        raise DataError("kind='retrieval' data is not read from tables; build a RetrievalData(queries, corpus, qrels)")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if _is_dir(path):
            _only_for_files(
                {"columns": columns, "header": header, "delimiter": delimiter, "encoding": encoding, "image_dir": image_dir},
                "an image folder",
            )
            if kind not in (None, "labeled"):
                raise DataError(f"{path} is an image folder, which holds labeled data, not kind={kind!r}")
            return read_image_folder(path)
        table = read_table_file(
            path,
            header=header,
            delimiter=delimiter,
            encoding=encoding,
            columns=columns,
            image_dir=Path(image_dir).expanduser() if image_dir is not None else None,
        )
        return to_data(table, kind, columns)
    _only_for_files({"header": header, "delimiter": delimiter, "encoding": encoding, "image_dir": image_dir}, "in-memory data")
    return to_data(table_from_memory(source), kind, columns)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _only_for_files(options: dict[str, Any], what: str) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise DataError(f"{', '.join(f'{name}=' for name in given)} cannot be used with {what}; these options apply to CSV files")
