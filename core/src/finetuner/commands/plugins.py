"""List the discovered plugins: name, version, status, number of models, error."""

from __future__ import annotations

import argparse
import dataclasses
import json

NAME = "plugins"
HELP = "list the discovered plugins and whether they loaded"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from finetuner.plugins import plugin_infos

    infos = plugin_infos()
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
    elif not infos:
        print("No finetuner plugins installed: pip install finetuner-vision finetuner-text finetuner-multimodal")
    else:
        rows = [[i.name, i.version, i.status, i.models, i.error] for i in infos]
        print(tabulate(rows, headers=["plugin", "version", "status", "models", "error"], tablefmt="simple"))
    return 0
