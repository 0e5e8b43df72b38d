"""Fine-tune a backbone on your data. Options come from flags, a YAML config file, or both (flags win).

Example::

    finetuner fit --model all-MiniLM-L6-v2 --train-data pairs.csv --eval-data held_out.csv --epochs 2
    finetuner fit --config run.yaml --resume

The config file holds fit() keyword arguments, e.g. ``model: bert-base-cased``,
``train_data: train.csv``, ``epochs: 3``, ``loss: CoSENTLoss``; ``loss_options`` and
``optimizer_options`` (mappings) are set there only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finetuner.commands import positive_int
from finetuner.training.options import OptionSpec, option_specs

NAME = "fit"
HELP = "fine-tune a backbone on your data"

# fit()'s own arguments: flag -> (type, help), each a keyword argument of the same name with '_' for '-';
# its options (FitOptions) get their flags from their declarations
ARGUMENTS: dict[str, tuple[Any, str]] = {
    "model": (str, "backbone name (see `finetuner models`), TEXT+IMAGE for a two-tower model, or an artifact directory"),
    "train-data": (str, "CSV file or image folder to train on"),
    "eval-data": (str, "CSV file or image folder to evaluate on before and after training"),
    "output-dir": (str, "where the artifact (output-dir/model), checkpoints and report go (default: finetuner-run)"),
    "kind": (str, "force the data kind: pairs, labeled or scored (default: inferred)"),
    "output-dim": (positive_int, "add a projection head to this dimension"),
}
SWITCHES = {
    "freeze": "freeze the backbone, train only the head (needs --output-dim)",
    "resume": "continue from the last checkpoint in the output directory",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of fit() options")
    for flag, (kind, text) in ARGUMENTS.items():
        parser.add_argument(f"--{flag}", type=kind, help=text)
    for flag, text in SWITCHES.items():
        parser.add_argument(f"--{flag}", action="store_true", default=None, help=text)
    options = parser.add_argument_group("training options (fit() keyword arguments of the same name with '_' for '-')")
    for spec in option_specs():
        if spec.flag:
            _add_option(options, spec)
    parser.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="a build option of the model, VALUE read as YAML (repeatable): image_size=64; "
        "text.KEY=VALUE or image.KEY=VALUE names the tower of a TEXT+IMAGE model",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_option(group: argparse._ArgumentGroup, spec: OptionSpec) -> None:
    """The flag of one option; its value, a string, is converted and checked by FitOptions."""
    text = spec.help
    if spec.choices is not None:
        text += f"; one of {', '.join(_shown(c) for c in spec.choices)}"
    if spec.range is not None:
        text += f"; in {spec.range}"
    if spec.default is not None:
        text += f" (default: {_shown(spec.default)})"
    flag, text = "--" + spec.name.replace("_", "-"), text.replace("%", "%%")
    if spec.types == (bool,):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif spec.types == (bool, dict):  # alone: true; or false, or a YAML mapping ("{r: 8, alpha: 16}")
        group.add_argument(flag, nargs="?", const="true", metavar="true|false|{KEY: VALUE, ...}", help=text)
    else:
        group.add_argument(flag, nargs="+" if tuple in spec.types else None, help=text)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    """fit() keyword arguments: the config file's, overridden by the flags given."""
    import yaml

    from finetuner.errors import DataError

    options: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = yaml.safe_load(args.config.read_text())
        except FileNotFoundError as exc:
            raise DataError(f"config file {args.config} does not exist") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise DataError(f"config file {args.config} is not valid YAML{where}: {problem}") from exc
        if not isinstance(loaded, dict):
            raise DataError(f"config file {args.config} must hold a mapping of fit() options")
        options.update(loaded)
    names = [flag.replace("-", "_") for flag in [*ARGUMENTS, *SWITCHES]] + [s.name for s in option_specs() if s.flag]
    options.update({name: getattr(args, name) for name in names if getattr(args, name) is not None})
    if args.quiet:
        options["verbose"] = False
    for pair in args.model_option or ():
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise DataError(f"--model-option takes KEY=VALUE, got {pair!r}")
        tower, dot, name = key.rpartition(".")
        model_options = options.setdefault("model_options", {})
        target = model_options.setdefault(f"{tower}_options", {}) if dot else model_options
        target[name] = yaml.safe_load(value)
    for required in ("model", "train_data"):
        if required not in options:
            raise DataError(f"fit needs --{required.replace('_', '-')} (or `{required}:` in the config file)")
    return options


def run(args: argparse.Namespace) -> int:
    import finetuner

    options = options_from(args)
    model = options.pop("model")
    if Path(model).is_dir():
        model = finetuner.load(model)
    finetuner.fit(model, options.pop("train_data"), options.pop("eval_data", None), **options)
    return 0
