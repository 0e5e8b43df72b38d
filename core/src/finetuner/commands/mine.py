"""Mine hard negatives for (query, document) pairs and write them as a training CSV.

The output has the header ``query,document,negative,negative_2,...`` and trains as pairs
with negatives (``finetuner fit MODEL mined.csv``). For each query, the corpus documents
most similar to it under MODEL are candidates; its positives (and copies of them) never
are, and the margins skip candidates scoring too close to the positive, which are likely
unlabelled positives::

    finetuner mine sentence-transformers/all-MiniLM-L6-v2 train.csv -o mined.csv --relative-margin 0.05
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetuner.choices import PRECISIONS

NAME = "mine"
HELP = "add hard negatives to query,document pairs (writes a CSV)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_ARTIFACT", help="an artifact directory or a backbone name")
    parser.add_argument("pairs", metavar="PAIRS", help="a CSV of query,document pairs")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the CSV with negatives")
    parser.add_argument(
        "--corpus",
        type=Path,
        help="documents to mine from: a text file (one per line) or an image folder (default: the pairs' documents)",
    )
    parser.add_argument("--num-negatives", type=int, default=3, help="negatives per pair (default: 3)")
    parser.add_argument(
        "--rank-range",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="candidate ranks LOW to HIGH-1, 0 the most similar (default: 0 and 10 x num-negatives)",
    )
    parser.add_argument("--margin", type=float, help="skip candidates scoring above the positive's score minus this")
    parser.add_argument(
        "--relative-margin",
        type=float,
        help="skip candidates scoring above positive - |positive| x this (0.05 is a good start)",
    )
    parser.add_argument(
        "--sampling", choices=("top", "random"), default="top", help="the best candidates or a random draw (default: top)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sampling random (default: 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="items per encoding batch (default: 64)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")


def run(args: argparse.Namespace) -> int:
    from finetuner.commands.encode import read_items
    from finetuner.mining import mine_hard_negatives

    corpus = read_items(args.corpus)[0] if args.corpus is not None else None
    rows = mine_hard_negatives(
        args.model,
        args.pairs,
        corpus,
        num_negatives=args.num_negatives,
        rank_range=tuple(args.rank_range) if args.rank_range else None,
        margin=args.margin,
        relative_margin=args.relative_margin,
        sampling=args.sampling,
        batch_size=args.batch_size,
        seed=args.seed,
        output=args.output,
        precision=args.precision,
        device=args.device,
    )
    print(f"wrote {len(rows)} pairs with {args.num_negatives} negatives each to {args.output}")
    return 0
