"""pooling="last" for decoder embedders: the last real token's state, EOS appended, under left and right padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import finetuner
import finetuner_text
from finetuner.models import TOKEN_POOLINGS, pool_tokens

TEXTS = ["hello", "a much longer text than the first", "mid size"]


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer random Qwen2Model with a byte-level Qwen2Tokenizer that, like Qwen's, never adds EOS itself."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Config, Qwen2Model, Qwen2Tokenizer

    folder = tmp_path_factory.mktemp("tiny_qwen2")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{char: number + 1 for number, char in enumerate(alphabet)}}
    Qwen2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)  # EOS and pad are both <|endoftext|>, as in Qwen
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    Qwen2Model(config).save_pretrained(folder)
    return folder


def test_last_is_a_token_pooling_and_reads_the_mask_not_the_padding_side():
    assert "last" in TOKEN_POOLINGS
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool_tokens(hidden, right, "last")[:, 0].tolist() == [1.0, 7.0]
    assert pool_tokens(hidden, left, "last")[:, 0].tolist() == [3.0, 7.0]


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_pooling_embeds_each_texts_eos_state(qwen_folder, side):
    model = finetuner.build_model(f"hf:{qwen_folder}", pooling="last", normalize=False)
    tower = model.tower()
    tower.tokenizer.padding_side = side
    eos = tower.tokenizer.eos_token_id
    assert tower.append_eos  # the tokenizer does not end texts with EOS itself
    features = tower.preprocess(TEXTS)
    mask = features["attention_mask"]
    assert not mask.all()  # the batch really is padded, on the side asked for
    assert (mask[:, -1] == 1).all() if side == "left" else (mask[:, 0] == 1).all()
    expected = []
    with torch.no_grad():
        for text in TEXTS:  # by hand: each text alone, unpadded, with EOS appended; the state of its last token
            ids = tower.tokenizer(text)["input_ids"] + [eos]
            states = tower.encoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
            expected.append(states[-1].numpy())
        padded = tower.eval()(features).numpy()
    np.testing.assert_allclose(padded, np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(finetuner.encode(model, TEXTS, precision="fp32", batch_size=2), np.stack(expected), atol=1e-5)


def test_eos_is_appended_within_max_length_and_never_twice(qwen_folder, tiny_folder):
    tower = finetuner_text.build_hf(qwen_folder, pooling="last", max_length=5)
    eos = tower.tokenizer.eos_token_id
    ids = tower.preprocess(["hi", "a longer text"])["input_ids"].tolist()
    assert ids[1][-1] == eos and len(ids[1]) == 5  # truncated to 4 tokens, then EOS
    assert tower.tokenizer("a lo")["input_ids"] + [eos] == ids[1]
    assert not finetuner_text.build_hf(qwen_folder, pooling="mean").append_eos  # only last-token pooling appends
    bert = finetuner_text.build_hf(tiny_folder, pooling="last")  # BERT's tokenizer has no EOS token: nothing appended
    assert not bert.append_eos and bert.preprocess(["hello"])["input_ids"].tolist() == [bert.tokenizer("hello")["input_ids"]]
    tower.tokenizer.add_eos_token = True  # a tokenizer that ends texts with EOS itself (as Qwen3-Embedding's does)
    assert not finetuner_text.hf.needs_eos(tower.tokenizer)


@pytest.mark.parametrize(
    "config", [{"pooling_mode": "lasttoken"}, {"pooling_mode_lasttoken": True, "pooling_mode_mean_tokens": False}]
)
def test_sentence_transformers_lasttoken_config_maps_to_last(qwen_folder, tmp_path, config):
    folder = tmp_path / "st"
    folder.mkdir()
    for path in qwen_folder.iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16, **config}))
    tower = finetuner_text.build_hf(folder)
    assert tower.pooling.mode == "last" and tower.append_eos
