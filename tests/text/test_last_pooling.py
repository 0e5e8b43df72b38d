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


def write_qwen(folder: Path, **tokenizer_options) -> Path:
    """A two-layer random Qwen2Model with a byte-level Qwen2Tokenizer that, like Qwen's, never adds EOS itself.

    EOS and pad are both ``<|endoftext|>``, as in Qwen, unless ``tokenizer_options`` say otherwise (``pad_token=None``).
    """
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Config, Qwen2Model, Qwen2Tokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{char: number + 1 for number, char in enumerate(alphabet)}}
    Qwen2Tokenizer(vocab=vocab, merges=[], **tokenizer_options).save_pretrained(folder)
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


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qwen(tmp_path_factory.mktemp("tiny_qwen2"))


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


def single_eos(ids: list[int], eos: int) -> bool:
    return ids[-1] == eos and ids[-2] != eos


@pytest.mark.parametrize("side", ["right", "left"])
def test_sentence_transformers_export_embeds_as_finetuner_and_reloads_without_a_second_eos(qwen_folder, tmp_path, side):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    model = finetuner.build_model(f"hf:{qwen_folder}", pooling="last", normalize=False)
    model.tower().tokenizer.padding_side = side  # Qwen3-Embedding pads on the left
    ours = finetuner.encode(model, TEXTS, precision="fp32", batch_size=2)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    theirs = st.SentenceTransformer(str(folder), device="cpu", local_files_only=True).encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)  # the exported tokenizer ends each text with EOS itself
    eos = model.tower().tokenizer.eos_token_id
    for reloaded in (
        finetuner.build_model(f"hf:{folder}", normalize=False),
        finetuner.load(finetuner.save(model, tmp_path / "a")),
    ):
        tower = reloaded.tower()
        assert all(single_eos(row, eos) for row in tower._token_ids(TEXTS))  # EOS once, whoever adds it
        np.testing.assert_allclose(finetuner.encode(reloaded, TEXTS, precision="fp32"), ours, atol=1e-5)
    assert not finetuner.build_model(f"hf:{folder}").tower().append_eos  # the export's tokenizer adds it


def test_a_tokenizer_that_appends_eos_keeps_its_bos_and_survives_save_and_load(tmp_path):
    """Llama style: a post-processor that adds BOS, no pad token."""
    from transformers import AutoTokenizer, LlamaTokenizer

    from finetuner_text.eos import save_appending_eos

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{char: number + 3 for number, char in enumerate("▁abcdefghijklmnopqrstuvwxyz")}}
    LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True).save_pretrained(tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "llama")
    plain = tokenizer("ab cd")["input_ids"]
    assert plain[0] == 1 and plain[-1] != 2

    def ours(texts: list[str]) -> list[list[int]]:
        return [[*row[:7], 2] for row in tokenizer(texts, truncation=True, max_length=8)["input_ids"]]

    save_appending_eos(tokenizer, tmp_path / "out", max_length=8, token_ids=ours)
    saved = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert saved("ab cd")["input_ids"] == [*plain, 2]  # BOS kept, EOS appended
    assert saved("abcdefghij", truncation=True, max_length=8)["input_ids"] == ours(["abcdefghij"])[0]
    assert tokenizer("ab cd")["input_ids"] == plain  # the tower's own tokenizer is left as it was
    assert not finetuner_text.hf.needs_eos(saved)


def test_a_tokenizer_that_cannot_append_eos_refuses_the_export(qwen_folder, tmp_path, monkeypatch):
    from finetuner_text import eos

    model = finetuner.build_model(f"hf:{qwen_folder}", pooling="last")
    monkeypatch.setattr(eos, "with_eos", lambda tokenizer: tokenizer)  # as if the post-processor got lost
    with pytest.raises(finetuner.ExportError, match="EOS"):
        finetuner.export_sentence_transformers(model, tmp_path / "st")
    assert not (tmp_path / "st").exists()


def test_a_tokenizer_without_a_pad_token_pads_with_eos(qwen_folder, tmp_path):
    folder = write_qwen(tmp_path / "nopad", pad_token=None)
    tower = finetuner_text.build_hf(folder, pooling="last")
    assert tower.tokenizer.pad_token_id == tower.tokenizer.eos_token_id
    features = tower.preprocess(TEXTS)
    padded = features["input_ids"][features["attention_mask"] == 0]
    assert len(padded) and (padded == tower.tokenizer.eos_token_id).all()
    with_pad = finetuner.build_model(f"hf:{qwen_folder}", pooling="last")
    without_pad = finetuner.build_model(f"hf:{folder}", pooling="last")
    np.testing.assert_allclose(
        finetuner.encode(without_pad, TEXTS, precision="fp32"), finetuner.encode(with_pad, TEXTS, precision="fp32"), atol=1e-6
    )


def test_a_tokenizer_without_pad_or_eos_token_is_refused_naming_the_model(tmp_path):
    folder = write_qwen(tmp_path / "bare", pad_token=None, eos_token=None)
    with pytest.raises(finetuner.FinetunerError, match=f"{folder}.*neither a pad token nor an EOS token"):
        finetuner_text.build_hf(folder)


def test_cls_takes_the_first_real_token_under_left_and_right_padding(qwen_folder):
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool_tokens(hidden, right, "cls")[:, 0].tolist() == [0.0, 4.0]
    assert pool_tokens(hidden, left, "cls")[:, 0].tolist() == [2.0, 4.0]
    tower = finetuner_text.build_hf(qwen_folder, pooling="cls").eval()
    with torch.no_grad():
        expected = [
            tower.encoder(input_ids=torch.tensor([tower.tokenizer(t)["input_ids"]])).last_hidden_state[0, 0] for t in TEXTS
        ]
        for side in ("right", "left"):
            tower.tokenizer.padding_side = side
            np.testing.assert_allclose(tower(tower.preprocess(TEXTS)).numpy(), torch.stack(expected).numpy(), atol=1e-5)
