"""Metric tables: one run's numbers, or before/after fine-tuning side by side; the headline subset of many metrics."""

from __future__ import annotations

from collections.abc import Mapping

from finetuner.evaluation.metrics import k_of
from finetuner.report.tables import boxed

HEADLINE_K = 10


def render(metrics: Mapping[str, float]) -> str:
    """A two-column table: metric, value."""
    return boxed([[name, _number(value)] for name, value in metrics.items()], ("metric", "value"), ("left", "right"))


def render_by_alpha(by_alpha: Mapping[float, Mapping[str, float]]) -> str:
    """One row per WiSE-FT alpha, one column per headline metric."""
    return render_rows("alpha", {f"{alpha:g}": metrics for alpha, metrics in by_alpha.items()})


def render_rows(label: str, by_row: Mapping[str, Mapping[str, float]]) -> str:
    """One row per key of ``by_row`` (its column headed ``label``), one column per headline metric."""
    names = list(dict.fromkeys(name for metrics in by_row.values() for name in headline(metrics)))
    rows = [[key, *(_number(metrics.get(name)) for name in names)] for key, metrics in by_row.items()]
    return boxed(rows, (label, *names), ("right",) * (len(names) + 1))


def compare(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """A table of metric, before, after and change (after - before); "-" where a side lacks the metric."""
    return boxed(change_rows(before, after), ("metric", "before", "after", "change"), ("left", "right", "right", "right"))


def change_rows(before: Mapping[str, float], after: Mapping[str, float]) -> list[list[str]]:
    """``[metric, before, after, change]`` per metric of either side, as text; "-" where a side lacks it."""
    rows = []
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name), after.get(name)
        change = f"{new - old:+.4f}" if old is not None and new is not None else "-"
        rows.append([name, _number(old), _number(new), change])
    return rows


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """A readable subset: every family at the smallest k and at 10 (else the largest k), R-based metrics, correlations."""
    ks = sorted({k for name in metrics if (k := k_of(name)) is not None})
    keep = {ks[0], HEADLINE_K if HEADLINE_K in ks else ks[-1]} if ks else set()
    return {name: value for name, value in metrics.items() if k_of(name) in keep or k_of(name) is None}


def comparison(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """The before/after table of the headline metrics, saying how many more there are."""
    shown_before, shown_after = headline(before), headline(after)
    table = compare(shown_before, shown_after)
    total = len(set(before) | set(after))
    shown = len(set(shown_before) | set(shown_after))
    return (
        table
        if shown == total
        else f"{table}\n{shown} of {total} metrics shown; all are in model.metrics and the artifact's finetuner.json"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
