"""The training report of an artifact: loss and metric curves (PNG), example queries (terminal text and HTML).

Everything comes from the artifact's ``finetuner.json``: ``training.history`` (``loss`` per
step, ``eval/<metric>`` at each evaluation) and ``examples`` (see
:mod:`finetuner.evaluation.examples`). ``fit()`` writes the report into the artifact it
saves; ``finetuner report ARTIFACT_DIR`` writes it again, anywhere. The PNG needs
matplotlib (``pip install 'finetuner-core[report]'``); without it the PNG is skipped.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.errors import ArtifactError

logger = logging.getLogger("finetuner")

PNG_FILE = "report.png"
HTML_FILE = "report.html"
HEADLINE_K = 10
CURVE_FAMILIES = ("recall", "ndcg", "mrr", "map@r", "spearman", "pearson")
CELL_WIDTH = 44


@dataclass
class Report:
    """What :func:`write_report` wrote (``png`` is None without matplotlib or history) and the terminal text."""

    png: Path | None
    html: Path
    text: str


def _k_of(name: str) -> int | None:
    _, at, k = name.rpartition("/")[2].partition("@")
    return int(k) if at and k.isdigit() else None


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """A readable subset: every family at the smallest k and at 10 (else the largest k), R-based metrics, correlations."""
    ks = sorted({k for name in metrics if (k := _k_of(name)) is not None})
    keep = {ks[0], HEADLINE_K if HEADLINE_K in ks else ks[-1]} if ks else set()
    return {name: value for name, value in metrics.items() if _k_of(name) in keep or _k_of(name) is None}


def comparison(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """The before/after table of the headline metrics, saying how many more there are."""
    from finetuner.evaluation.report import compare

    shown_before, shown_after = headline(before), headline(after)
    table = compare(shown_before, shown_after)
    total = len(set(before) | set(after))
    shown = len(set(shown_before) | set(shown_after))
    return (
        table
        if shown == total
        else f"{table}\n{shown} of {total} metrics shown; all are in model.metrics and the artifact's finetuner.json"
    )


def write_report(artifact: str | Path, output: str | Path | None = None) -> Report:
    """Write ``report.png`` and ``report.html`` for ``artifact`` into ``output`` (default: the artifact directory)."""
    from finetuner.artifacts import read_config

    artifact = Path(artifact)
    config = read_config(artifact)
    history = (config.get("training") or {}).get("history") or []
    examples = config.get("examples") or []
    if not history and not examples:
        raise ArtifactError(f"{artifact} has no training history or examples to report (it was not written by fit())")
    output = Path(output) if output is not None else artifact
    output.mkdir(parents=True, exist_ok=True)
    png = plot_curves(history, output / PNG_FILE) if history else None
    page = output / HTML_FILE
    page.write_text(render_html(config, examples, png, output, title=str(artifact)), encoding="utf-8")
    return Report(png=png, html=page, text=examples_text(examples))


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
    k = max((_k_of(n) for n in shown if _k_of(n) is not None), default=None)
    chosen = [n for n in distinct if n in shown and _family(n) in CURVE_FAMILIES and _k_of(n) in (k, None)]
    return (chosen or distinct)[:limit]


def _family(name: str) -> str:
    """``"eval/t2i/recall@10"`` -> ``"recall"``; names without a k (``"map@r"``, ``"spearman"``) stay whole."""
    base = name.rpartition("/")[2]
    return base.partition("@")[0] if _k_of(name) is not None else base


# -- examples ------------------------------------------------------------------------------------


def examples_text(examples: Sequence[Mapping[str, Any]]) -> str:
    """Each example query with its top results before and after, as terminal tables (images by file name)."""
    from tabulate import tabulate

    from finetuner.table import BOX

    if not examples:
        return "no example queries (scored data, or no eval data)"
    blocks = []
    for number, example in enumerate(examples, 1):
        query = _cell(example["query"], example["query_modality"])
        lines = [f"example {number}/{len(examples)}: {query}" + (f"  [label: {example['label']}]" if "label" in example else "")]
        if example.get("expected"):
            lines.append("  expected: " + " | ".join(_cell(item, example["result_modality"]) for item in example["expected"]))
        before, after = example.get("before") or [], example.get("after") or []
        rows = [
            [rank + 1, _result(before, rank, example), _result(after, rank, example)]
            for rank in range(max(len(before), len(after)))
        ]
        lines.append(tabulate(rows, headers=("#", "before", "after"), tablefmt=BOX, disable_numparse=True))
        blocks.append("\n".join(lines))
    legend = f"(✓ relevant; top {len(examples[0].get('after') or [])} of {examples[0].get('searched', '?')} sampled eval items)"
    return "\n\n".join([*blocks, legend])


def _result(results: Sequence[Mapping[str, Any]], rank: int, example: Mapping[str, Any]) -> str:
    if rank >= len(results):
        return ""
    entry = results[rank]
    label = f" [{entry['label']}]" if "label" in entry else ""
    return f"{entry['score']:.3f} {'✓' if entry['relevant'] else ' '} {_cell(entry['item'], example['result_modality'])}{label}"


def _cell(item: str, modality: str) -> str:
    if modality == "image":
        return "<in-memory image>" if item.startswith("data:") else Path(item).name
    text = " ".join(item.split())
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def render_html(
    config: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], png: Path | None, output: Path, *, title: str
) -> str:
    """A self-contained page: the curves, the headline metrics, and each example query's results as text or thumbnails."""
    metrics = config.get("metrics") or {}
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8">',
        f"<title>finetuner report: {html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
        "td.hit{background:#e6f4e6}img.item{max-width:96px;max-height:96px}.score{color:#666;font-size:small}</style>",
        f"</head><body><h1>finetuner report</h1><p>{html.escape(title)}</p>",
    ]
    if png is not None:
        parts.append(f'<h2>training</h2><img src="{html.escape(png.name)}" alt="loss and metric curves">')
    if metrics.get("before") or metrics.get("after"):
        parts.append(_metrics_html(metrics.get("before") or {}, metrics.get("after") or {}))
    if examples:
        parts.append(
            f"<h2>example queries</h2><p>top {len(examples[0].get('after') or [])} of {examples[0].get('searched', '?')} sampled eval items; green: relevant</p>"
        )
        parts.extend(_example_html(example, output) for example in examples)
    parts.append("</body></html>")
    return "\n".join(parts)


def _metrics_html(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    shown_before, shown_after = headline(before), headline(after)
    rows = []
    for name in dict.fromkeys([*shown_before, *shown_after]):
        old, new = shown_before.get(name), shown_after.get(name)
        change = f"{new - old:+.4f}" if old is not None and new is not None else "-"
        cells = [name, *("-" if v is None else f"{v:.4f}" for v in (old, new)), change]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        "<h2>metrics</h2><table><tr><th>metric</th><th>before</th><th>after</th><th>change</th></tr>" + "".join(rows) + "</table>"
    )


def _example_html(example: Mapping[str, Any], output: Path) -> str:
    label = f" <em>[{html.escape(str(example['label']))}]</em>" if "label" in example else ""
    head = f"<h3>{_item_html(example['query'], example['query_modality'], output)}{label}</h3>"
    if example.get("expected"):
        head += (
            "<p>expected: "
            + " ".join(_item_html(item, example["result_modality"], output) for item in example["expected"])
            + "</p>"
        )
    before, after = example.get("before") or [], example.get("after") or []
    rows = ["<tr><th>#</th><th>before</th><th>after</th></tr>"]
    for rank in range(max(len(before), len(after))):
        cells = [f"<td>{rank + 1}</td>"]
        for results in (before, after):
            if rank >= len(results):
                cells.append("<td></td>")
                continue
            entry = results[rank]
            tag = f" [{html.escape(str(entry['label']))}]" if "label" in entry else ""
            item = _item_html(entry["item"], example["result_modality"], output)
            cells.append(
                f'<td class="{"hit" if entry["relevant"] else ""}">{item}{tag} <span class="score">{entry["score"]:.3f}</span></td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return head + "<table>" + "".join(rows) + "</table>"


def _item_html(item: str, modality: str, output: Path) -> str:
    if modality != "image":
        return html.escape(item)
    return f'<img class="item" src="{html.escape(_image_source(item, output), quote=True)}" alt="{html.escape(Path(item).name if not item.startswith("data:") else "image")}">'


def _image_source(item: str, output: Path) -> str:
    """A data URI as is; a file as a path relative to the page (a file URI where there is none)."""
    if item.startswith("data:"):
        return item
    try:
        return Path(os.path.relpath(item, output.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(item).as_uri()
