"""Run a real fine-tune on data every machine has offline and print the before/after metrics."""

from __future__ import annotations

import argparse

from finetuner.commands import positive_int

NAME = "demo"
HELP = "fine-tune a model on embedded data and show before/after metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from finetuner.demo.run import DEMOS, describe

    parser.epilog = "demos:\n" + describe()
    parser.add_argument("--task", choices=list(DEMOS), default="text-to-text", help="which demo (default: text-to-text)")
    parser.add_argument(
        "--output-dir", default="finetuner-demo", help="where the artifact and report go (default: finetuner-demo)"
    )
    parser.add_argument("--epochs", type=positive_int, help="override the demo's number of epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from finetuner.demo.run import run_demo

    overrides = {"verbose": not args.quiet}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    run_demo(args.task, args.output_dir, **overrides)
    return 0
