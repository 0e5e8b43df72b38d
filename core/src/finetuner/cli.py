"""The ``finetuner`` command line: one module per subcommand in ``finetuner.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings

from finetuner.errors import FinetunerError

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int; heavy imports stay inside run().
COMMANDS = ("models", "plugins", "fit", "mine", "encode", "calibrate", "evaluate", "export", "push", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetuner", description="Fine-tune pretrained backbones into embedding models for search."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"finetuner.commands.{name}")
        sub = subparsers.add_parser(  # the help shows the module docstring as written: its examples one per line
            module.NAME, help=module.HELP, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"finetuner: warning: {message}\n"
    try:
        return args.run(args)
    except (FinetunerError, OSError) as exc:  # the user's to fix (options, data, a full disk): one line; -v: the traceback
        if args.verbose:
            traceback.print_exc()
        print(f"finetuner: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # fit has said where its last checkpoint is
        return 130
