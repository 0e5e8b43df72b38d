"""The box style every terminal table is drawn in: heavy header, light body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import DataRow, Line, TableFormat, tabulate

BOX = TableFormat(
    lineabove=Line("┏━", "━", "━┳━", "━┓"),
    linebelowheader=Line("┡━", "━", "━╇━", "━┩"),
    linebetweenrows=None,
    linebelow=Line("└─", "─", "─┴─", "─┘"),
    headerrow=DataRow("┃ ", " ┃ ", " ┃"),
    datarow=DataRow("│ ", " │ ", " │"),
    padding=0,
    with_header_hide=None,
)


def boxed(rows: Sequence[Sequence[Any]], headers: Sequence[str], align: Sequence[str] | None = None) -> str:
    """``rows`` under ``headers`` in the box style; values are shown as given (strings are never read as numbers)."""
    return tabulate(rows, headers=headers, tablefmt=BOX, colalign=align, disable_numparse=True)
