"""Tiny random BERT-family encoders with a real WordPiece tokenizer built from a vocab we write.

The models under the registered names keep the real hidden size (768, so the registered dim
holds) but have one layer, two heads and a ~200-token vocabulary, so they build in well under a second.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tests.hubcache import hub_snapshot

BERT_ID = "bert-base-cased"
MSMARCO_ID = "sentence-transformers/msmarco-distilbert-base-v3"
WORDS = ("the", "a", "of", "and", "hello", "world", "search", "query", "document", "text", "short", "longer")
MAX_POSITIONS = 128
MSMARCO_MAX_SEQ_LENGTH = 100


def write_vocab(directory: Path, cased: bool) -> int:
    """A WordPiece vocab.txt: special tokens, characters, ``##`` continuations, a few words; returns its size."""
    letters = string.ascii_letters if cased else string.ascii_lowercase
    chars = letters + string.digits + string.punctuation
    words = [w.capitalize() for w in WORDS] + list(WORDS) if cased else list(WORDS)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in letters + string.digits), *words]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return len(tokens)


def write_bert(directory: Path, *, hidden: int = 768, cased: bool = True, seed: int = 0) -> Path:
    """A one-layer random BertModel and its BertTokenizerFast saved in ``directory``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = write_vocab(directory, cased)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
    )
    BertModel(config).save_pretrained(directory)
    BertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=not cased).save_pretrained(directory)
    return directory


def write_distilbert(directory: Path, *, seed: int = 0) -> Path:
    """A one-layer random DistilBertModel, its tokenizer and sentence-transformers config files."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = write_vocab(directory, cased=False)
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=vocab_size, dim=768, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=MAX_POSITIONS
    )
    DistilBertModel(config).save_pretrained(directory)
    DistilBertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    write_st_configs(directory, "mean", MSMARCO_MAX_SEQ_LENGTH, dim=768)
    return directory


def write_st_configs(directory: Path, pooling: str, max_seq_length: int, dim: int, **extra_flags: bool) -> None:
    """sentence-transformers' ``1_Pooling/config.json`` and ``sentence_bert_config.json``."""
    flags = {f"pooling_mode_{m}": pooling == m.split("_")[0] for m in ("cls_token", "mean_tokens", "max_tokens")}
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim, **flags, **extra_flags}))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))


def write_hub_cache(hf_home: Path) -> None:
    """Both registered models under their real ids in a hub-layout cache."""
    write_bert(hub_snapshot(hf_home, BERT_ID), cased=True)
    write_distilbert(hub_snapshot(hf_home, MSMARCO_ID))
