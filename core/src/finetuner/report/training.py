"""The training report of an artifact (``finetuner report``): curves, metrics and example queries.

Everything comes from the artifact's ``finetuner.json``: ``training.history`` (``loss`` per
step, ``eval/<metric>`` at each evaluation) and ``examples`` (see
:mod:`finetuner.evaluation.examples`). ``fit()`` writes the report into the artifact it
saves; ``finetuner report ARTIFACT_DIR`` writes it again, anywhere: ``report.png``
(:mod:`~finetuner.report.plots`; skipped without matplotlib), ``report.html``
(:mod:`~finetuner.report.page`) and the example queries as terminal text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuner.errors import ArtifactError
from finetuner.report.page import render_html
from finetuner.report.plots import plot_curves
from finetuner.report.tables import boxed

PNG_FILE = "report.png"
HTML_FILE = "report.html"
CELL_WIDTH = 44


@dataclass
class Report:
    """What :func:`write_report` wrote (``png`` is None without matplotlib or history) and the terminal text."""

    png: Path | None
    html: Path
    text: str


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


def examples_text(examples: Sequence[Mapping[str, Any]]) -> str:
    """Each example query with its top results before and after, as terminal tables (images by file name)."""
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
        lines.append(boxed(rows, ("#", "before", "after")))
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
