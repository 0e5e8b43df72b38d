"""The training report as one self-contained HTML page: curves, headline metrics, example queries with thumbnails."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finetuner.report.metrics import change_rows, headline


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
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in change_rows(headline(before), headline(after))
    ]
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
