"""Subcommands of the ``finetuner`` CLI."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (argparse turns the error into a usage message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def dimensions(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers of 1 or more, e.g. 384,256,128,64."""
    return [positive_int(part) for part in text.split(",")]


def add_truncate_dim(parser: argparse.ArgumentParser, help: str) -> None:
    """The ``--truncate-dim DIM`` option (Matryoshka models), with the command's own ``help``."""
    parser.add_argument("--truncate-dim", type=positive_int, metavar="DIM", help=help)
