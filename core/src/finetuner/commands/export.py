"""Export a fine-tuned artifact to ONNX (checked against torch; the `onnx` extra) or to another library's folder.

Examples::

    finetuner export --onnx finetuner-run/model --quantize int8
    finetuner encode finetuner-run/model texts.txt -o texts.npy --backend onnx-int8
    finetuner export --sentence-transformers finetuner-run/model -o my-model
    finetuner export --transformers clip-run/model -o my-clip
    finetuner export --timm image-run/model -o my-timm-model

--onnx writes ARTIFACT/onnx/<modality>.onnx (tower, projection, normalisation; inputs named as
the tower's preprocessing outputs, dynamic batch and token axes), <modality>.int8.onnx with
--quantize int8, and towers.json listing them.

--sentence-transformers (text models), --transformers (CLIP and SigLIP models: one CLIPModel or SiglipModel) and --timm
(timm image models) write a folder that library loads with no finetuner import, with a
README.md model card (default: ARTIFACT/<format>). See finetuner.ecosystem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetuner.choices import QUANTIZATIONS
from finetuner.commands import add_truncate_dim

NAME = "export"
HELP = "export an artifact to ONNX, or to a sentence-transformers, transformers or timm folder"
FORMAT_HELP = {
    "sentence-transformers": "a sentence-transformers folder (text models): SentenceTransformer(DIR) loads it",
    "transformers": "a transformers folder (CLIP and SigLIP models): AutoModel.from_pretrained(DIR) loads it",
    "timm": 'a timm folder (timm image models): timm.create_model("local-dir:DIR", pretrained=True) loads it',
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help="artifact directory (from fit or finetuner.save)")
    formats = parser.add_mutually_exclusive_group(required=True)
    formats.add_argument("--onnx", action="store_true", help="ONNX graphs for onnxruntime")
    for fmt, text in FORMAT_HELP.items():
        formats.add_argument(f"--{fmt}", dest="format", action="store_const", const=fmt, help=text)
    parser.add_argument("-o", "--output", type=Path, help="folder to write (default: ARTIFACT/onnx or ARTIFACT/<format>)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="also write a dynamically quantised int8 graph per tower")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT even when finetuner did not write it")
    add_truncate_dim(
        parser, "--sentence-transformers: record truncate_dim, so the library cuts the embeddings to DIM (Matryoshka models)"
    )


def run(args: argparse.Namespace) -> int:
    import json

    if args.format:
        from finetuner.ecosystem import export_to
        from finetuner.errors import OptionError

        if args.quantize:
            raise OptionError("--quantize applies to --onnx only")
        folder = export_to(args.artifact, args.format, args.output, overwrite=args.overwrite, truncate_dim=args.truncate_dim)
        print(f"{args.format}: {folder}")
        return 0
    if args.truncate_dim:
        from finetuner.errors import OptionError

        raise OptionError("--truncate-dim applies to --sentence-transformers only")

    from finetuner.export import export_onnx
    from finetuner.onnx_runtime import INDEX_FILE

    folder = export_onnx(args.artifact, args.output, quantize=args.quantize, overwrite=args.overwrite)
    for modality, entry in json.loads((folder / INDEX_FILE).read_text()).items():
        line = f"{modality}: {folder / entry['file']} (inputs {', '.join(entry['inputs'])}; max |onnx - torch| {entry['max_abs_diff']:.1e})"
        if "int8" in entry:
            line += f"; int8: {entry['int8']['file']} (lowest cosine to fp32 {entry['int8']['min_cosine_to_fp32']:.4f})"
        print(line)
    return 0
