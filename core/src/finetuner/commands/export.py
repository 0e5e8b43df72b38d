"""Export a fine-tuned artifact's towers to ONNX, checked against torch (needs the `onnx` extra).

Example::

    finetuner export --onnx finetuner-run/model --quantize int8
    finetuner encode finetuner-run/model texts.txt -o texts.npy --backend onnx-int8

Writes ARTIFACT/onnx/<modality>.onnx (tower, projection, normalisation; inputs named as the
tower's preprocessing outputs, dynamic batch and token axes), <modality>.int8.onnx with
--quantize int8, and towers.json listing them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "export an artifact to ONNX (optionally int8) for onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help="artifact directory (from fit or finetuner.save)")
    parser.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the one format so far)")
    parser.add_argument("--output", type=Path, help="folder for the graphs (default: ARTIFACT/onnx)")
    parser.add_argument("--quantize", choices=("int8",), help="also write a dynamically quantised int8 graph per tower")


def run(args: argparse.Namespace) -> int:
    import json

    from finetuner.export import INDEX_FILE, export_onnx

    folder = export_onnx(args.artifact, args.output, quantize=args.quantize)
    for modality, entry in json.loads((folder / INDEX_FILE).read_text()).items():
        line = f"{modality}: {folder / entry['file']} (inputs {', '.join(entry['inputs'])}; max |onnx - torch| {entry['max_abs_diff']:.1e})"
        if "int8" in entry:
            line += f"; int8: {entry['int8']['file']} (lowest cosine to fp32 {entry['int8']['min_cosine_to_fp32']:.4f})"
        print(line)
    return 0
