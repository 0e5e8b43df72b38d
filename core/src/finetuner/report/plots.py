"""Loss and metric curves of a training run, as a PNG (needs matplotlib: ``pip install 'finetuner-core[report]'``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.evaluation.metrics import k_of
from finetuner.report.metrics import headline

logger = logging.getLogger("finetuner")

CURVE_FAMILIES = ("recall", "ndcg", "mrr", "map@r", "spearman", "pearson")


def plot_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Loss per step and the main evaluation metrics per evaluation, side by side; None without matplotlib."""
    try:  # the object API on an Agg canvas: no pyplot, no global backend switch
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed, so %s is skipped: pip install 'finetuner-core[report]'", path.name)
        return None
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evaluations = [h for h in history if any(key.startswith("eval/") for key in h)]
    names = curve_metrics([key for h in evaluations for key in h if key.startswith("eval/")])
    panels = [p for p, wanted in (("loss", losses), ("eval", names)) if wanted]
    figure = Figure(figsize=(6 * max(1, len(panels)), 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=False):
        if panel == "loss":
            _plot_loss(ax, losses, history)
        else:
            for name in names:
                points = [(h["step"], h[name]) for h in evaluations if name in h]
                ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=name.removeprefix("eval/"))
            ax.set(title="evaluation", xlabel="step", ylabel="metric")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def _plot_loss(ax: Any, losses: list[tuple[int, float]], history: Sequence[Mapping[str, Any]]) -> None:
    steps, values = [s for s, _ in losses], [v for _, v in losses]
    ax.plot(steps, values, alpha=0.4 if len(values) > 20 else 1.0, label="loss")
    if len(values) > 20:  # a moving average shows the trend through the noise
        window = max(5, len(values) // 20)
        ax.plot(steps, moving_average(values, window), label=f"mean of {window} steps")
        ax.legend(fontsize="small")
    epochs = [h for h in history if "loss" in h]
    for previous, current in zip(epochs, epochs[1:], strict=False):
        if current["epoch"] != previous["epoch"]:
            ax.axvline(previous["step"], color="grey", linestyle=":", linewidth=0.8)
    ax.set(title="training loss", xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    totals = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (totals[ends] - totals[starts]) / (ends - starts)


def curve_metrics(names: Sequence[str], limit: int = 6) -> list[str]:
    """The ``eval/...`` metrics worth a curve: the main families at the largest headline k, R-based and correlations."""
    distinct = list(dict.fromkeys(names))
    shown = set(headline(dict.fromkeys(distinct, 0.0)))
    k = max((k_of(n) for n in shown if k_of(n) is not None), default=None)
    chosen = [n for n in distinct if n in shown and _family(n) in CURVE_FAMILIES and k_of(n) in (k, None)]
    return (chosen or distinct)[:limit]


def _family(name: str) -> str:
    """``"eval/t2i/recall@10"`` -> ``"recall"``; names without a k (``"map@r"``, ``"spearman"``) stay whole."""
    base = name.rpartition("/")[2]
    return base.partition("@")[0] if k_of(name) is not None else base
