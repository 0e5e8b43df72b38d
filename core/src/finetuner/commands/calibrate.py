"""Compute a model's int8/uint8 quantization ranges on a sample of items and keep them with it.

SAMPLE is read as `finetuner encode` reads its INPUT (a text file, one item per line, or a
folder of images); a few hundred items like the corpus's do. Then `finetuner encode
--quantize int8` and `finetuner evaluate --quantize int8` use the ranges::

    finetuner calibrate run/model sample.txt                       # into run/model/finetuner.json
    finetuner calibrate all-MiniLM-L6-v2 sample.txt -o minilm      # a backbone: saved as an artifact
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetuner.choices import PRECISIONS
from finetuner.commands import dimensions, positive_int

NAME = "calibrate"
HELP = "compute int8/uint8 quantization ranges from a sample and store them with the model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_ARTIFACT", help="artifact directory or backbone name")
    parser.add_argument("sample", type=Path, help="text file (one item per line) or image folder")
    parser.add_argument(
        "-o", "--output", type=Path, help="write the model with its ranges here (default: into the artifact given)"
    )
    parser.add_argument(
        "--dims",
        type=dimensions,
        default=[],
        metavar="DIMS",
        help="also calibrate these truncations, e.g. 256,64 (the output dimension and the model's Matryoshka dims always)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args: argparse.Namespace) -> int:
    import finetuner
    from finetuner.artifacts import update_config
    from finetuner.calibration import ranges_record
    from finetuner.commands.encode import read_items
    from finetuner.errors import OptionError

    items, _ = read_items(args.sample)
    artifact = Path(args.model).is_dir()
    if not artifact and args.output is None:
        raise OptionError(f"{args.model!r} is a backbone name: give -o/--output, the artifact folder to write")
    model = finetuner.load(args.model) if artifact else finetuner.build_model(args.model)
    options = {"batch_size": args.batch_size, "precision": args.precision, "device": args.device}
    finetuner.calibrate(model, items, dims=args.dims, **options)
    if args.output is None:
        update_config(args.model, quantization_ranges=ranges_record(model.quantization_ranges))
    else:
        finetuner.save(model, args.output)
    dims = ", ".join(map(str, model.quantization_ranges))
    print(f"calibrated int8/uint8 ranges at {dims} dims on {len(items)} items, in {args.output or args.model}")
    return 0
