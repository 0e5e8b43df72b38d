"""Delimited text files (CSV, TSV) -> a :class:`Table`, with errors that name the file and line."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetuner.data.rows import KNOWN_NAMES, Table, is_number
from finetuner.errors import DataError

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UNSUPPORTED = {".json", ".jsonl", ".parquet", ".xlsx", ".xls", ".feather", ".pkl"}


def read_table_file(
    path: Path,
    *,
    header: bool | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    columns: Mapping[str, Any] | None = None,
    image_dir: Path | None = None,
) -> Table:
    """Read a delimited text file; ``header=None`` sniffs whether its first row names the columns."""
    if path.suffix.lower() in UNSUPPORTED:
        raise DataError(
            f"{path}: {path.suffix} files are not read directly; load it (for example with pandas) and pass the DataFrame"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    records = parse_records(decode(raw, path, encoding), path, _delimiter(path, delimiter))
    if not records:
        raise DataError(f"{path} is empty")
    first_line, first = records[0]
    for line, fields in records[1:]:
        if len(fields) != len(first):
            hint = " (a field containing the delimiter must be quoted)" if len(fields) > len(first) else ""
            raise DataError(f"{path}, line {line}: {len(fields)} fields, expected {len(first)} like line {first_line}{hint}")
    if header is None:
        header = _sniff_header(first, [fields for _, fields in records[1:51]], columns)
    names = first if header else None
    body = records[1:] if header else records
    base = (image_dir if image_dir is not None else path.parent).absolute()
    return Table(
        rows=[fields for _, fields in body],
        origins=[line for line, _ in body],
        source=str(path),
        names=names,
        image_base=base,
        image_dir_given=image_dir is not None,
    )


def decode(raw: bytes, path: Path, encoding: str | None) -> str:
    """Bytes -> text: ``encoding`` if given, else UTF-16 when a byte-order mark says so, else UTF-8."""
    chosen = encoding or ("utf-16" if raw.startswith(UTF16_BOMS) else "utf-8-sig")
    try:
        text = raw.decode(chosen)
    except LookupError:
        raise DataError(f"encoding={encoding!r} is not a known text encoding (reading {path})") from None
    except UnicodeDecodeError as error:
        line = raw[: error.start].decode(chosen, errors="replace").count("\n") + 1
        hint = "; save it as UTF-8 or pass encoding= (for example 'latin-1' or 'cp1252')" if encoding is None else ""
        raise DataError(
            f"{path}, line {line}: bytes {raw[error.start : error.end]!r} are not valid {chosen.removesuffix('-sig')}{hint}"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(
            f"{path}, line {line}: contains NUL characters (is it UTF-16 without a byte-order mark? then pass encoding='utf-16')"
        )
    return text


def parse_records(text: str, path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """(first line of the record, its fields) for each non-blank record; quoted fields may span lines."""
    csv.field_size_limit(2**31 - 1)  # a long cell (a whole document) is data; the default limit is 128 KiB
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    previous = 0
    try:
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                records.append((start, fields))
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: cannot parse the row: {error}") from None
    return records


def _delimiter(path: Path, delimiter: str | None) -> str:
    if delimiter is None:
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise DataError(f"delimiter={delimiter!r}: give a single character other than a quote or a line break, like ',' or '\\t'")
    return delimiter


def _sniff_header(first: list[str], sample: list[list[str]], columns: Mapping[str, Any] | None) -> bool:
    """Whether the first row holds column names rather than data."""
    if columns and any(isinstance(ref, str) for ref in columns.values()):
        return True
    if any(is_number(field) for field in first):
        return False
    if any(field.strip().lower() in KNOWN_NAMES for field in first):
        return True
    # like csv.Sniffer: a column that is numeric in every later row but not in the first
    return bool(sample) and any(all(is_number(row[i]) for row in sample) for i in range(len(first)))
