"""Fine-tune a backbone on your data. Options come from flags, a YAML config file, or both (flags win).

Example::

    finetuner fit --model all-MiniLM-L6-v2 --train-data pairs.csv --eval-data held_out.csv --epochs 2
    finetuner fit --config run.yaml --resume

The config file holds fit() keyword arguments, e.g. ``model: bert-base-cased``,
``train_data: train.csv``, ``epochs: 3``, ``loss: CoSENTLoss``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "fit"
HELP = "fine-tune a backbone on your data"

# flag -> (type, help); each becomes a fit() keyword argument of the same name with '_' for '-'
FLAGS: dict[str, tuple[Any, str]] = {
    "model": (str, "backbone name (see `finetuner models`), TEXT+IMAGE for a two-tower model, or an artifact directory"),
    "train-data": (str, "CSV file or image folder to train on"),
    "eval-data": (str, "CSV file or image folder to evaluate on before and after training"),
    "output-dir": (str, "where the artifact (output-dir/model), checkpoints and report go (default: finetuner-run)"),
    "kind": (str, "force the data kind: pairs, labeled or scored (default: inferred)"),
    "loss": (str, "loss name (default: by data kind)"),
    "miner": (str, "pytorch-metric-learning miner name, for labeled data"),
    "epochs": (int, "passes over the training data (default 1)"),
    "batch-size": (int, "examples per batch (default 32)"),
    "learning-rate": (float, "peak learning rate (default 2e-5)"),
    "optimizer": (str, "any torch.optim optimizer by name (default AdamW)"),
    "scheduler": (str, "linear, cosine or constant (default linear, with warmup)"),
    "weight-decay": (float, "weight decay (default 0.01)"),
    "warmup-ratio": (float, "share of steps spent warming up (default 0.1)"),
    "gradient-accumulation-steps": (int, "batches per optimizer step (default 1)"),
    "output-dim": (int, "add a projection head to this dimension"),
    "seed": (int, "random seed (default 0)"),
    "device": (str, "cpu, cuda or auto (default auto)"),
    "precision": (str, "auto, fp32 or bf16 (default auto: bf16 where the hardware runs it fast)"),
    "num-workers": (int, "DataLoader worker processes for preprocessing (default 0)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of fit() options")
    for flag, (kind, text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, help=text)
    parser.add_argument(
        "--freeze", action="store_true", default=None, help="freeze the backbone, train only the head (needs --output-dim)"
    )
    parser.add_argument(
        "--resume", action="store_true", default=None, help="continue from the last checkpoint in the output directory"
    )
    parser.add_argument("--compile", action="store_true", default=None, help="run the towers through torch.compile")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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
            raise DataError(f"config file {args.config} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise DataError(f"config file {args.config} must hold a mapping of fit() options")
        options.update(loaded)
    for flag in [*FLAGS, "freeze", "resume", "compile"]:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            options[flag.replace("-", "_")] = value
    if args.quiet:
        options["verbose"] = False
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
