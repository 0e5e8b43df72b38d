"""Embed items with a backbone or a fine-tuned artifact and write a .npy array (rows in input order).

INPUT is a text file with one item per line (text, or image paths relative to the file),
or a folder of images (all image files below it, sorted by path).

Under torchrun each rank embeds a contiguous shard and rank 0 writes the one output::

    torchrun --nproc_per_node=4 -m finetuner encode ARTIFACT corpus.txt -o corpus.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetuner.choices import BACKENDS, EMBEDDING_QUANTIZATIONS, PRECISIONS
from finetuner.commands import add_truncate_dim, positive_int

NAME = "encode"
HELP = "embed a file of texts or a folder of images into a .npy array"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="artifact directory or backbone name")
    parser.add_argument("input", type=Path, help="text file (one item per line) or image folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the .npy embeddings")
    parser.add_argument(
        "--modality",
        choices=("text", "image"),
        help="the tower to use (two-tower models; default: text for a file, image for a folder)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="items per encoding batch (default: 64)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    add_truncate_dim(parser, "keep the first DIM dimensions, re-normalised (for a model trained with --matryoshka-dims)")
    parser.add_argument(
        "--quantize",
        choices=EMBEDDING_QUANTIZATIONS,
        help="write codes instead of float32: int8/uint8 (a byte per dimension; the artifact's ranges, "
        "see `finetuner calibrate`) or binary/ubinary (a bit per dimension, 8 to a byte)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", metavar="TEXT", help='text put before each text item, e.g. "query: "')
    prompt.add_argument(
        "--prompt-name",
        metavar="NAME",
        help="put the model's prompt of this name before each text item, e.g. query (default: the model's default prompt)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch, or onnxruntime on an artifact exported with `finetuner export --onnx` (onnx-int8: its quantised graphs)",
    )


def read_items(path: Path) -> tuple[list, str]:
    """The items of INPUT and the modality they suggest."""
    from finetuner.errors import DataError

    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images, "image"
    if not path.is_file():
        raise DataError(f"input {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}") from exc
    if lines and all(Path(line).suffix.lower() in IMAGE_SUFFIXES for line in lines if line):
        return [path.parent / line for line in lines if line], "image"
    return lines, "text"


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from finetuner.artifacts import read_config
    from finetuner.encoding import as_model, encode_sharded
    from finetuner.errors import DataError

    items, suggested = read_items(args.input)
    source = Path(args.model)
    if args.backend == "torch":
        model = as_model(args.model)
        towers = len(model.towers)
    elif source.is_dir():  # onnxruntime reads the artifact's exported graphs
        model, towers = source, sum(len(s["modalities"]) for s in read_config(source)["sources"])
    else:
        raise DataError(
            f"--backend {args.backend} needs an artifact directory exported with `finetuner export --onnx`, not {args.model!r}"
        )
    modality = args.modality or (suggested if towers > 1 else None)
    options = {
        "batch_size": args.batch_size,
        "modality": modality,
        "precision": args.precision,
        "backend": args.backend,
        "truncate_dim": args.truncate_dim,
        "quantize": args.quantize,
        "prompt": args.prompt,
        "prompt_name": args.prompt_name,
    }
    embeddings = encode_sharded(model, items, device=args.device, **options)
    if embeddings is None:  # another rank of a torchrun launch: rank 0 writes the output
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, embeddings)
    what = "embeddings" if args.quantize is None else f"{args.quantize} codes"
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} {what} to {args.output}")
    return 0
