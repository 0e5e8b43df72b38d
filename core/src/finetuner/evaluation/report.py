"""Metric tables: one run's numbers, or before/after fine-tuning side by side."""

from __future__ import annotations

from collections.abc import Mapping

from tabulate import tabulate

from finetuner.table import BOX


def render(metrics: Mapping[str, float]) -> str:
    """A two-column table: metric, value."""
    return tabulate(
        [[name, _number(value)] for name, value in metrics.items()],
        headers=("metric", "value"),
        tablefmt=BOX,
        colalign=("left", "right"),
        disable_numparse=True,
    )


def compare(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """A table of metric, before, after and change (after - before); "-" where a side lacks the metric."""
    names = list(before) + [name for name in after if name not in before]
    rows = []
    for name in names:
        old, new = before.get(name), after.get(name)
        change = f"{new - old:+.4f}" if old is not None and new is not None else "-"
        rows.append([name, _number(old), _number(new), change])
    return tabulate(
        rows,
        headers=("metric", "before", "after", "change"),
        tablefmt=BOX,
        colalign=("left", "right", "right", "right"),
        disable_numparse=True,
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
