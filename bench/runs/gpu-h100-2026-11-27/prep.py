"""Make /tmp/minilm: all-MiniLM-L6-v2's config, tokenizer and ST files with random weights."""

import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

source, target = Path(__file__).parent / "minilm", Path(sys.argv[1])
shutil.copytree(source, target, dirs_exist_ok=True)
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(target)).save_pretrained(target)
print("random-weight MiniLM in", target, sorted(p.name for p in target.iterdir()))
