"""The "Finetuner backbones" table of installed backbones (``describe_models``, ``finetuner models``)."""

from __future__ import annotations

from typing import Any

import tabulate as _tabulate

from finetuner.registry import INSTALL_HINT, list_models
from finetuner.report.tables import boxed

COLUMNS = ("model", "task", "output_dim", "architecture", "description")
TITLE = "Finetuner backbones"


def render_table(rows: list[dict[str, Any]], title: str = TITLE) -> str:
    """Draw rows (dicts keyed by COLUMNS) as the boxed table with a centred title."""
    if rows:
        default_padding, _tabulate.MIN_PADDING = _tabulate.MIN_PADDING, 0  # headers as tight as the body
        try:
            body = boxed([[r[c] for c in COLUMNS] for r in rows], COLUMNS, ("right",) * len(COLUMNS))
        finally:
            _tabulate.MIN_PADDING = default_padding
    else:  # tabulate draws no bottom border without rows
        widths = [len(c) for c in COLUMNS]
        body = "\n".join(
            [
                "┏━" + "━┳━".join("━" * w for w in widths) + "━┓",
                "┃ " + " ┃ ".join(COLUMNS) + " ┃",
                "┡━" + "━╇━".join("━" * w for w in widths) + "━┩",
                "└─" + "─┴─".join("─" * w for w in widths) + "─┘",
            ]
        )
    width = len(body.splitlines()[0])
    return f"{title.center(width).rstrip()}\n{body}"


def describe_models(task: str | None = None) -> list[dict[str, Any]]:
    """Print the table of installed backbones and return its rows."""
    rows = [spec.row() for spec in list_models(task)]
    print(render_table(rows))
    if not rows:
        print(INSTALL_HINT if task is None and not list_models() else f"No installed backbone for task {task!r}.")
    return rows
