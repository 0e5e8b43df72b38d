"""Hugging Face text towers hold only the parameters their forward uses (DDP waits for every other one).

BERT-like encoders build a pooler (dense + tanh over ``[CLS]``) that token pooling never
uses; the tower drops it after loading, so the checkpoint loads without a report, the
weights it keeps are the checkpoint's, and artifacts saved with a pooler still load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import finetuner
import finetuner_text
from tests.text.tiny_models import MAX_POSITIONS, write_vocab

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
# model type -> config options beside the vocabulary size and positions
ARCHITECTURES = {
    "bert": TINY,
    "roberta": {**TINY, "pad_token_id": 0},
    "xlm-roberta": {**TINY, "pad_token_id": 0},
    "mpnet": {**TINY, "pad_token_id": 0},
    "albert": {**TINY, "embedding_size": 16},
    "electra": {**TINY, "embedding_size": 32},
    "deberta-v2": TINY,
    "distilbert": {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
}
TEXTS = ["a short text", "the longer text of a query and a document"]


def write_model(directory: Path, model_type: str) -> Path:
    """A random one-layer ``model_type`` encoder (with its pooler, where it has one) and a WordPiece tokenizer."""
    from transformers import AutoConfig, AutoModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = write_vocab(directory, cased=False)
    config = AutoConfig.for_model(
        model_type, vocab_size=vocab_size, max_position_embeddings=MAX_POSITIONS, **ARCHITECTURES[model_type]
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    BertTokenizerFast(vocab=str(directory / "vocab.txt")).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_every_parameter_of_the_tower_gets_a_gradient(tmp_path, capfd, model_type):
    folder = write_model(tmp_path / model_type, model_type)
    capfd.readouterr()
    tower = finetuner_text.build_hf(folder)
    assert "LOAD REPORT" not in capfd.readouterr().err  # no unexpected or missing keys
    saved = load_file(folder / "model.safetensors")
    kept = tower.encoder.state_dict()
    assert not [key for key in kept if key.startswith("pooler.")]
    for key, value in kept.items():
        if key in saved:  # a few buffers (position ids) are not saved
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert set(saved) - set(kept) <= {k for k in saved if k.startswith("pooler.")}
    tower(tower.preprocess(TEXTS)).sum().backward()
    assert [name for name, p in tower.named_parameters() if p.grad is None] == []


def test_an_artifact_saved_with_the_pooler_still_loads(tiny_folder, tmp_path):
    model = finetuner.build_model(f"hf:{tiny_folder}", max_length=16)
    finetuner.save(model, tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    pooler = {
        f"towers.text.encoder.{k}": v for k, v in load_file(tiny_folder / "model.safetensors").items() if k.startswith("pooler.")
    }
    assert pooler
    save_file({**load_file(weights), **pooler}, weights)  # as finetuner wrote it before the pooler was dropped
    loaded = finetuner.load(tmp_path / "model")
    torch.testing.assert_close(finetuner.encode(loaded, TEXTS), finetuner.encode(model, TEXTS))


def test_sentence_transformers_loads_an_export_without_the_pooler_quietly(tiny_folder, tmp_path, capfd):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = finetuner.build_model(f"hf:{tiny_folder}", max_length=16)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    capfd.readouterr()
    loaded = sentence_transformers.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    assert "LOAD REPORT" not in capfd.readouterr().err  # built without a pooler: no missing keys
    torch.testing.assert_close(loaded.encode(TEXTS), finetuner.encode(model, TEXTS, precision="fp32"), atol=1e-5, rtol=1e-5)
