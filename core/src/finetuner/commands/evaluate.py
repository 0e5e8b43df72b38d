"""Measure a model (an artifact directory or a backbone name) on a data set: retrieval metrics or correlations."""

from __future__ import annotations

import argparse
import json

from finetuner.choices import PRECISIONS
from finetuner.data.types import KINDS

NAME = "evaluate"
HELP = "measure a model or artifact on a data set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL_OR_ARTIFACT", help="an artifact directory or a backbone name (see `finetuner models`)"
    )
    parser.add_argument("data", metavar="DATA", help="a CSV file or a folder the data readers understand")
    parser.add_argument("--kind", choices=KINDS, help="the kind of data, when it cannot be told from the columns")
    parser.add_argument(
        "--metrics", nargs="+", metavar="NAME", help="metric families or names, e.g. ndcg recall@10 (default: all for the kind)"
    )
    parser.add_argument(
        "--k",
        nargs="+",
        type=int,
        default=[1, 5, 10, 20],
        metavar="K",
        help="cut-offs for the ranking metrics (default: 1 5 10 20)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="items per encoding batch (default: 64)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetuner.data import load_data
    from finetuner.evaluation import evaluate, render

    if Path(args.model).is_dir():
        from finetuner.artifacts import load

        model = load(args.model)
    else:
        from finetuner.models.build import build_model

        model = build_model(args.model)
    data = load_data(args.data, kind=args.kind)
    results = evaluate(
        model, data, k=args.k, metrics=args.metrics, batch_size=args.batch_size, precision=args.precision, device=args.device
    )
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0
