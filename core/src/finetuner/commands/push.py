"""Upload an artifact or an export to the Hugging Face Hub (needs network and a token: `hf auth login` or HF_TOKEN).

Examples::

    finetuner push finetuner-run/model my-org/my-model
    finetuner export --sentence-transformers finetuner-run/model -o st-model
    finetuner push st-model my-org/my-st-model --private

Creates the model repo when it is missing and uploads the folder as one commit; its README.md
model card becomes the repo's card. Offline (HF_HUB_OFFLINE), with the Hub unreachable or with
no token it fails at once, before uploading anything. The local folder is never changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "push"
HELP = "upload an artifact or an export to the Hugging Face Hub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, metavar="ARTIFACT", help="artifact directory, or a folder finetuner export wrote")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the model repo, e.g. my-org/my-model")
    parser.add_argument("--private", action="store_true", help="create the repo private (when it does not exist yet)")
    parser.add_argument("--message", default=None, help="commit message (default: 'Upload with finetuner')")


def run(args: argparse.Namespace) -> int:
    from finetuner.hub import COMMIT_MESSAGE, push_to_hub

    print(push_to_hub(args.folder, args.repo_id, private=args.private, message=args.message or COMMIT_MESSAGE))
    return 0
