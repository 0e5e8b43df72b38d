"""Measure a model (an artifact directory or a backbone name) on a data set: retrieval metrics or correlations."""

from __future__ import annotations

import argparse
import json

from finetuner.choices import EMBEDDING_QUANTIZATIONS, PRECISIONS
from finetuner.commands import dimensions, positive_int
from finetuner.data.types import KINDS
from finetuner.errors import OptionError

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
        type=positive_int,
        default=[1, 5, 10, 20],
        metavar="K",
        help="cut-offs for the ranking metrics (default: 1 5 10 20)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="items per encoding batch (default: 64)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--dims",
        type=dimensions,
        metavar="DIMS",
        help="measure the embeddings cut to each of these first dimensions (re-normalised), one row each, "
        "e.g. 384,256,128,64 for a model trained with --matryoshka-dims",
    )
    parser.add_argument(
        "--quantize",
        choices=EMBEDDING_QUANTIZATIONS,
        help="search the corpus's int8/uint8/binary/ubinary codes with the queries' codes "
        "(int8/uint8: the artifact's ranges, else calibrated on the corpus)",
    )
    parser.add_argument(
        "--rescore",
        type=positive_int,
        metavar="N",
        help="with --quantize: re-rank each query's top N with its float32 embedding",
    )
    parser.add_argument(
        "--wise-ft",
        type=alphas,
        metavar="ALPHAS",
        help="WiSE-FT: the metrics of alpha * the model + (1 - alpha) * its pretrained backbone at each alpha, "
        "e.g. 0,0.25,0.5,0.75,1; builds the backbone with pretrained=True, so its weights must be cached or downloadable",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetuner.data import load_data
    from finetuner.evaluation import evaluate
    from finetuner.report.metrics import render

    if Path(args.model).is_dir():
        from finetuner.artifacts import load

        model = load(args.model)
    else:
        from finetuner.models.build import build_model

        model = build_model(args.model)
    data = load_data(args.data, kind=args.kind)
    options = {
        "k": args.k,
        "metrics": args.metrics,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "device": args.device,
        "quantize": args.quantize,
        "rescore": args.rescore,
    }
    if args.wise_ft and args.dims:
        raise OptionError("--wise-ft and --dims each print one row per setting: give one of them")
    if args.dims:
        from finetuner.report.metrics import render_rows

        by_dim = {str(dim): evaluate(model, data, truncate_dim=dim, **options) for dim in args.dims}
        print(json.dumps(by_dim, indent=2) if args.json else render_rows("dims", by_dim))
        return 0
    if args.wise_ft:
        from finetuner.report.metrics import render_by_alpha
        from finetuner.training.wise_ft import evaluate_alphas, pretrained_weights

        by_alpha = evaluate_alphas(model, data, args.wise_ft, pretrained_weights(model), **options)
        print(json.dumps({str(a): m for a, m in by_alpha.items()}, indent=2) if args.json else render_by_alpha(by_alpha))
        return 0
    results = evaluate(model, data, **options)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


def alphas(text: str) -> list[float]:
    """An argparse type: comma-separated numbers from 0 to 1."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0,0.5,1") from None
    if not all(0 <= value <= 1 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each alpha must be from 0 to 1")
    return values
