"""A table of raw rows (from a CSV file or memory) and its conversion to a task data set.

Conversion maps our roles (``query``/``document``, ``item``/``label``, ``a``/``b``/``score``)
onto the table's columns, infers the kind when it is not given, parses scores, and turns
image columns into checked :class:`pathlib.Path` objects. Pairs data also takes hard
negatives: columns named like ``negative``, ``negative_2``, ``hard_negative``, ``neg1``, or
every column after the first two of a table without names (tuples of 3 or more); a negative
column whose cells are lists (``negatives`` in many Hugging Face data sets) gives one negative
per list item.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuner.data.images import is_file, is_image_name
from finetuner.data.types import LabeledData, PairData, ScoredData
from finetuner.errors import DataError

logger = logging.getLogger("finetuner")

ROLES: dict[str, tuple[str, ...]] = {"pairs": ("query", "document"), "labeled": ("item", "label"), "scored": ("a", "b", "score")}

# Column names (lower case) each role answers to, best first; also accepted as keys of ``columns=``.
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "pairs": {
        "query": ("query", "anchor", "text", "sentence1", "question", "caption", "q"),
        "document": ("document", "positive", "image", "sentence2", "answer", "passage", "doc", "d"),
    },
    "labeled": {
        "item": ("item", "image", "text", "sentence", "path", "file", "filename", "image_path"),
        "label": ("label", "class", "category", "target", "y"),
    },
    "scored": {
        "a": ("a", "sentence1", "text1", "query", "anchor"),
        "b": ("b", "sentence2", "text2", "document", "positive"),
        "score": ("score", "similarity", "label", "relevance"),
    },
}
SCORE_NAMES = ("score", "similarity", "relevance")
SCORE_LIKE = (*SCORE_NAMES, "label")  # a numeric third column named so makes the table scored data
LABEL_NAMES = ALIASES["labeled"]["label"]
IMAGE_COLUMN_NAMES = frozenset({"image", "img", "image_path", "image_file", "picture", "photo"})
KNOWN_NAMES = frozenset(name for roles in ALIASES.values() for names in roles.values() for name in names) | IMAGE_COLUMN_NAMES
DESCRIPTIONS = {"pairs": "query/document pairs", "labeled": "labeled items", "scored": "scored pairs"}
NEGATIVE_NAME = re.compile(r"(hard[ _]?)?negative.*|neg_?\d*")  # lower-case column names of hard negatives
NEGATIVE_KEYS = ("negative", "negatives")  # keys of ``columns=`` naming the negative column(s)


@dataclass
class Table:
    """Rows of raw values, where each row came from, and how to resolve relative image paths."""

    rows: list[list[Any]]
    origins: list[int]  # the line (files, 1-based) or index (memory) of each row
    source: str  # shown in messages: the file name, or "<memory>"
    names: list[str] | None = None  # the header, if any
    unit: str = "line"  # "line" (files) or "row" (memory)
    image_base: Path | None = None  # folder relative image paths start from (None: as given)
    image_dir_given: bool = False  # image_base came from the caller, so it is never guessed

    @property
    def width(self) -> int:
        return len(self.names) if self.names is not None else (len(self.rows[0]) if self.rows else 0)

    def where(self, row: int) -> str:
        return f"{self.source}, {self.unit} {self.origins[row]}"

    def describe_column(self, index: int) -> str:
        return repr(self.names[index]) if self.names is not None else f"column {index}"


def is_number(value: Any) -> bool:
    """A finite real number, or a string holding one (booleans are not numbers)."""
    return _to_float(value) is not None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numeric_column(table: Table, index: int) -> bool:
    return bool(table.rows) and all(is_number(row[index]) for row in table.rows)


def _find_name(table: Table, wanted: str) -> int | None:
    """The index of the column called ``wanted``: exact match first, then ignoring case and spaces."""
    names = table.names or []
    if wanted in names:
        return names.index(wanted)
    folded = [name.strip().lower() for name in names]
    key = wanted.strip().lower()
    return folded.index(key) if key in folded else None


def _resolve_reference(table: Table, role: str, ref: Any) -> int:
    """A column given by the caller as a name or a 0-based index -> its index."""
    if isinstance(ref, bool) or not isinstance(ref, (numbers.Integral, str)):
        raise DataError(f"columns={{{role!r}: {ref!r}}}: give a column name (str) or a 0-based index (int)")
    if isinstance(ref, numbers.Integral):
        ref = int(ref)
        if not 0 <= ref < table.width:
            raise DataError(
                f"columns={{{role!r}: {ref}}}: {table.source} has {table.width} columns (indices 0 to {table.width - 1})"
            )
        return ref
    if table.names is None:
        raise DataError(
            f"columns={{{role!r}: {ref!r}}} names a column, but {table.source} has no header row; "
            "give 0-based column indices instead, or pass header=True"
        )
    index = _find_name(table, ref)
    if index is None:
        raise DataError(
            f"columns={{{role!r}: {ref!r}}}: no such column in {table.source}; available: {', '.join(map(repr, table.names))}"
        )
    return index


def _kind_of_keys(keys: list[str]) -> str:
    folded = {key.strip().lower() for key in keys}
    if folded & (set(ROLES["scored"]) | set(SCORE_NAMES)):
        return "scored"
    if folded & (set(ROLES["labeled"]) | set(LABEL_NAMES)):
        return "labeled"
    return "pairs"


def _map_given(table: Table, kind: str, columns: Mapping[str, Any]) -> dict[str, int]:
    """Roles named in ``columns=`` (role or alias -> column name or index) -> column indices."""
    mapping: dict[str, int] = {}
    for key, ref in columns.items():
        role = next((r for r, names in ALIASES[kind].items() if str(key).strip().lower() in (r, *names)), None)
        if role is None:
            valid = sorted({name for r, names in ALIASES[kind].items() for name in (r, *names)})
            raise DataError(
                f"columns= key {key!r} is not a role of {kind} data; use {', '.join(ROLES[kind])} (or an alias: {', '.join(valid)})"
            )
        if role in mapping:
            raise DataError(f"columns= maps the {role!r} role twice (key {key!r})")
        mapping[role] = _resolve_reference(table, str(key), ref)
    return mapping


def _map_by_name(table: Table, kind: str, mapping: dict[str, int]) -> dict[str, int]:
    """Fill the roles still missing from the header's names, then by position when there are as many columns as roles."""
    mapping = dict(mapping)
    if table.names is not None:
        folded = [name.strip().lower() for name in table.names]
        for role, names in ALIASES[kind].items():
            if role in mapping:
                continue
            for name in names:
                if name in folded and folded.index(name) not in mapping.values():
                    mapping[role] = folded.index(name)
                    break
    # as many columns as roles, or pairs (and their negatives) without names: the rest go in order
    if table.width == len(ROLES[kind]) or (kind == "pairs" and table.names is None):
        free = [index for index in range(table.width) if index not in mapping.values()]
        missing = [role for role in ROLES[kind] if role not in mapping]
        if len(free) < len(missing):
            raise DataError(
                f"{table.source} has {table.width} column(s) and no column left for the {', '.join(map(repr, missing))} "
                f"role of {kind} data; give every role a column (columns=)"
            )
        mapping.update(zip(missing, free))
    return mapping


def _infer_kind(table: Table) -> str:
    """The kind of data in ``table``, from its column names (or, without any, its width); DataError when unclear.

    With names, scored data is inferred only from a column named like a score: a numeric third
    column under another name (``query,document,id``) stops and asks for ``kind=`` or ``columns=``.
    Without names, three columns with a numeric third are a,b,score (the STS layout).
    """
    width = table.width
    if table.names is None:
        if width == 3 and _numeric_column(table, 2):
            return "scored"
        if width == 2 or (width > 2 and table.unit == "row" and not any(_numeric_column(table, i) for i in range(2, width))):
            return "pairs"  # in memory, tuples of 3 or more texts or images: query, document, negatives
        raise DataError(
            f"{table.source} has {width} column{'s' if width != 1 else ''} and no header, so the kind of data is unclear: "
            "2 columns are read as query,document pairs, 3 with a numeric third as a,b,score. "
            "Pass kind='pairs'|'labeled'|'scored' with columns={role: index}, or name the columns "
            "(query,document,negative,... for pairs with hard negatives)" + _delimiter_hint(table)
        )
    folded = [name.strip().lower() for name in table.names]
    named_score = any(name in SCORE_NAMES for name in folded)
    unclear = width == 3 and not named_score and folded[2] not in SCORE_LIKE and not folded[2].startswith("negative")
    if unclear and _numeric_column(table, 2):  # query,document,id: an id is no score
        raise DataError(
            f"{table.source}: its third column {table.names[2]!r} holds numbers but is not named like a score "
            f"({', '.join(SCORE_LIKE)}), so the kind of data is unclear (columns: {', '.join(map(repr, table.names))}). "
            f"Pass kind='scored' to use it as the score, kind='pairs' to leave it out, or columns= to choose, "
            f"e.g. columns={{'query': {table.names[0]!r}, 'document': {table.names[1]!r}}}"
        )
    # (kind, whether its score column must hold numbers): a column named like a score is
    # scored data even with a bad value (reported with its line); "label" needs numbers
    candidates = [("scored", False)] if named_score else []
    if width == 3 and folded[2] in SCORE_LIKE and _numeric_column(table, 2):
        candidates.append(("scored", True))
    if any(name in LABEL_NAMES for name in folded):
        candidates.append(("labeled", False))
    candidates.append(("pairs", False))
    for kind, numeric in candidates:
        mapping = _map_by_name(table, kind, {})
        if len(mapping) == len(ROLES[kind]) and (not numeric or _numeric_column(table, mapping["score"])):
            return kind
    raise DataError(
        f"cannot tell which columns of {table.source} to use (columns: {', '.join(map(repr, table.names))}); "
        "pass columns= mapping roles to columns, e.g. columns={'query': 'question', 'document': 'answer'}, "
        "{'item': ..., 'label': ...} or {'a': ..., 'b': ..., 'score': ...}" + _delimiter_hint(table)
    )


def _delimiter_hint(table: Table) -> str:
    if table.width != 1 or table.unit != "line":
        return ""
    first = table.names[0] if table.names is not None else str(table.rows[0][0]) if table.rows else ""
    for delimiter, shown in (("\t", "'\\t'"), (";", "';'"), ("|", "'|'"), (",", "','")):
        if delimiter in first:
            return f". The rows have a single field: if the file is separated by {shown}, pass delimiter={shown}"
    return ""


def to_data(
    table: Table, kind: str | None = None, columns: Mapping[str, Any] | None = None
) -> PairData | LabeledData | ScoredData:
    """Convert a table into the data set of ``kind`` (inferred when None), logging what was read."""
    if not table.rows:
        raise DataError(f"{table.source} has no rows" + (" (only a header)" if table.names is not None else ""))
    if table.width < 2 and not columns:
        raise DataError(
            f"{table.source} has a single column; it needs 2 (pairs, labeled items) or 3 (a,b,score)" + _delimiter_hint(table)
        )
    if columns is not None and not isinstance(columns, Mapping):
        raise DataError(f"columns= must be a dict mapping roles to columns, got {type(columns).__name__}")
    inferred = kind is None
    columns = dict(columns or {})
    negative_refs = [columns.pop(key) for key in NEGATIVE_KEYS if key in columns]
    if kind is None:
        kind = _kind_of_keys([str(key) for key in columns]) if columns else _infer_kind(table)
    elif kind not in ROLES:
        raise DataError(f"kind={kind!r} cannot be read from a table; use one of {', '.join(map(repr, ROLES))}")
    if negative_refs and kind != "pairs":
        raise DataError(f"columns={{'negative': ...}} applies to pairs data; this is {kind} data")
    mapping = _map_by_name(table, kind, _map_given(table, kind, columns))
    missing = [role for role in ROLES[kind] if role not in mapping]
    if missing:
        available = ", ".join(map(repr, table.names)) if table.names is not None else f"{table.width} unnamed columns"
        raise DataError(
            f"{table.source}: no column for the {' and '.join(map(repr, missing))} role of {kind} data (columns: {available}); "
            f"pass columns={{{', '.join(f'{role!r}: ...' for role in ROLES[kind])}}}"
        )
    values = {role: _convert_column(table, role, index) for role, index in mapping.items()}
    negatives = _negative_columns(table, mapping, negative_refs) if kind == "pairs" else []
    data = _build(kind, values, table.source, [column for index in negatives for column in _negative_values(table, index)])
    _log(table, data, mapping, inferred, negatives)
    return data


def _negative_columns(table: Table, mapping: dict[str, int], refs: list[Any]) -> list[int]:
    """The columns holding hard negatives: those ``columns=`` names, else those named like a negative
    (every column after the first two of a table without names)."""
    if refs:
        flat = [ref for given in refs for ref in (given if isinstance(given, (list, tuple)) else [given])]
        indices = [_resolve_reference(table, "negative", ref) for ref in flat]
        taken = [index for index in indices if index in mapping.values()]
        if taken:
            raise DataError(f"columns=: {table.describe_column(taken[0])} cannot be both a negative and another role")
        return indices
    free = [index for index in range(table.width) if index not in mapping.values()]
    if table.names is None:
        return free
    return [index for index in free if NEGATIVE_NAME.fullmatch(table.names[index].strip().lower())]


def _build(
    kind: str, values: dict[str, list[Any]], source: str, negatives: list[list[Any]]
) -> PairData | LabeledData | ScoredData:
    if kind == "pairs":
        rows = [list(row) for row in zip(*negatives, strict=True)] if negatives else None
        return PairData(queries=values["query"], documents=values["document"], source=source, negatives=rows)
    if kind == "labeled":
        return LabeledData(items=values["item"], labels=values["label"], source=source)
    return ScoredData(a=values["a"], b=values["b"], scores=values["score"], source=source)


def _negative_values(table: Table, index: int) -> list[list[Any]]:
    """The negatives of column ``index``: itself, or, when its cells are lists, one column per list item."""
    cells = [row[index] for row in table.rows]
    if not any(isinstance(cell, (list, tuple)) for cell in cells):
        return [_convert_column(table, "negative", index)]
    width = len(next(cell for cell in cells if isinstance(cell, (list, tuple))))
    for row, cell in enumerate(cells):
        if not isinstance(cell, (list, tuple)) or not cell or len(cell) != width:
            got = f"{type(cell).__name__} {cell!r}" if not isinstance(cell, (list, tuple)) else f"a list of {len(cell)}"
            raise DataError(
                f"{table.where(row)}: {table.describe_column(index)} holds {got}, not a list of {width} negatives like "
                "the first list: every pair needs the same number of negatives"
            )
    return [_convert_column(table, "negative", index, [cell[item] for cell in cells]) for item in range(width)]


def _convert_column(table: Table, role: str, index: int, column: list[Any] | None = None) -> list[Any]:
    """Column ``index`` (or ``column``, values drawn from it) checked and converted for ``role``."""
    column = [row[index] for row in table.rows] if column is None else column
    for row, value in enumerate(column):
        if _is_missing(value) or (isinstance(value, str) and not value.strip() and role != "score"):
            raise DataError(f"{table.where(row)}: empty {role!r} value ({table.describe_column(index)})")
    if role == "score":
        scores = []
        for row, value in enumerate(column):
            number = _to_float(value)
            if number is None:
                raise DataError(f"{table.where(row)}: score {value!r} ({table.describe_column(index)}) is not a finite number")
            scores.append(number)
        return scores
    if role == "label":
        return [str(value) for value in column]
    if _is_image_column(table, index, column):
        return _image_paths(table, index, column)
    return column


def _is_image_column(table: Table, index: int, column: list[Any]) -> bool:
    named = table.names is not None and table.names[index].strip().lower() in IMAGE_COLUMN_NAMES
    paths = [value for value in column if isinstance(value, (str, Path))]
    if not paths:
        return False
    return named or (len(paths) == len(column) and all(is_image_name(value) for value in paths))


def _image_paths(table: Table, index: int, column: list[Any]) -> list[Any]:
    """Strings and paths -> existing absolute Paths (relative ones from ``table.image_base``)."""
    base = _image_base(table, column)
    out: list[Any] = []
    for row, value in enumerate(column):
        if not isinstance(value, (str, Path)):
            out.append(value)  # a PIL image or an array, kept as it is
            continue
        path = _as_path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        if not is_file(path):
            raise DataError(f"{table.where(row)}: image {table.describe_column(index)} not found: {path}")
        out.append(path)
    return out


def _as_path(value: str | Path) -> Path:
    return Path(value.strip()) if isinstance(value, str) else value


def _image_base(table: Table, column: list[Any]) -> Path | None:
    """The folder relative image paths start from; when the first one is missing there and the
    caller gave no folder, a subfolder of it that has the image (like ``images/``) is used."""
    base = table.image_base
    first = next((_as_path(v) for v in column if isinstance(v, (str, Path)) and not _as_path(v).is_absolute()), None)
    if base is None or table.image_dir_given or first is None or is_file(base / first):
        return base
    try:
        found = sorted(sub for sub in base.iterdir() if sub.is_dir() and is_file(sub / first))
    except OSError:
        return base
    if len(found) == 1:
        logger.info("images in %s are relative to %s (found there; pass image_dir= to choose)", table.source, found[0])
        return found[0]
    return base


def _log(
    table: Table, data: PairData | LabeledData | ScoredData, mapping: dict[str, int], inferred: bool, negatives: list[int]
) -> None:
    roles = [*mapping.items(), *(("negative", index) for index in negatives)]
    if table.names is not None:
        used = ", ".join(f"{role}={table.names[index]!r}" for role, index in roles)
    else:
        used = ", ".join(f"{role}=column {index}" for role, index in roles)
    extra = f" in {len(set(data.labels)):,} classes" if isinstance(data, LabeledData) else ""
    if negatives:
        extra = f" with {data.num_negatives} hard negative{'s' if data.num_negatives > 1 else ''} each"
    how = f"kind inferred: {data.kind}; force with kind=..." if inferred else f"kind: {data.kind}"
    logger.info(
        "read %s %s%s from %s (%s; columns %s)", f"{len(data):,}", DESCRIPTIONS[data.kind], extra, table.source, how, used
    )
