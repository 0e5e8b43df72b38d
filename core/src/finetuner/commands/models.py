"""List the installed backbones as a table (or JSON)."""

from __future__ import annotations

import argparse
import json

from finetuner.registry import TASKS

NAME = "models"
HELP = "list the installed backbones"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, help="only the backbones of this task")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args: argparse.Namespace) -> int:
    from finetuner.registry import list_models
    from finetuner.report.backbones import describe_models

    if args.json:
        print(json.dumps([dict(s.row(), aliases=list(s.aliases), plugin=s.plugin) for s in list_models(args.task)], indent=2))
    else:
        describe_models(args.task)
    return 0
