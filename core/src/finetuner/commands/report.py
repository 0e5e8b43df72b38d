"""Write the training report of an artifact: loss and metric curves (report.png) and example queries (report.html).

Example::

    finetuner report finetuner-run/model
    finetuner report finetuner-run/model --output reports/run-1

Prints each example query with its top results before and after fine-tuning, then the
paths of the files written. fit() writes the same report into the artifact it saves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "curves and before/after example queries of a fine-tuned artifact"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, metavar="ARTIFACT_DIR", help="artifact directory written by fit")
    parser.add_argument(
        "--output", type=Path, metavar="DIR", help="folder for report.png and report.html (default: ARTIFACT_DIR)"
    )


def run(args: argparse.Namespace) -> int:
    from finetuner.report.training import write_report

    report = write_report(args.artifact, args.output)
    print(report.text)
    print(f"curves: {report.png}" if report.png else "curves: not written (no training history, or matplotlib missing)")
    print(f"page: {report.html}")
    return 0
