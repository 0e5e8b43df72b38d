"""finetuner-text: registered models from an offline hub cache, hf: ids and folders, pooling, tokenisation, artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import finetuner
import finetuner_text
import finetuner_text.plugin
from tests.hubcache import use_hf_home
from tests.text.tiny_models import (
    BERT_ID,
    MAX_POSITIONS,
    MSMARCO_ID,
    MSMARCO_MAX_SEQ_LENGTH,
    write_bert,
    write_st_configs,
)

LONG = "the longer text of a query and a document " * 60


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_listing_registers_both_models_and_imports_no_deep_learning_library():
    code = (
        "import sys, json, finetuner\n"
        "rows = [s.row() | {'plugin': s.plugin} for s in finetuner.list_models('text-to-text')]\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]\n"
        "print(json.dumps({'rows': rows, 'heavy': heavy}))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["heavy"] == []
    rows = {r["model"]: r for r in out["rows"]}
    assert rows[BERT_ID] == {
        "model": BERT_ID,
        "task": "text-to-text",
        "output_dim": 768,
        "architecture": "transformer",
        "description": "Pretrained on BookCorpus and English Wikipedia",
        "plugin": "text",
    }
    assert (
        rows[MSMARCO_ID]["output_dim"] == 768 and rows[MSMARCO_ID]["description"] == "Pretrained on BERT, fine-tuned on MS Marco"
    )


def test_registered_models_load_pretrained_weights_from_the_hub_cache(hub_cache):
    from safetensors.torch import load_file

    bert = finetuner.build_model(BERT_ID)
    tower = bert.tower()
    assert type(tower.encoder).__name__ == "BertModel" and tower.output_dim == 768
    assert (tower.pooling.mode, tower.max_length) == ("mean", MAX_POSITIONS)  # 256 capped by the model's positions
    saved = load_file(next(hub_cache.glob("models--bert-base-cased/snapshots/*/model.safetensors")))
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert torch.equal(tower.encoder.embeddings.word_embeddings.weight, saved[key])
    assert tower.tokenizer.tokenize("Hello worlds") == ["Hello", "world", "##s"]  # the cached cased vocab
    assert finetuner.encode(bert, ["Hello world", "short"]).shape == (2, 768)

    msmarco = finetuner.build_model(MSMARCO_ID).tower()
    assert type(msmarco.encoder).__name__ == "DistilBertModel" and msmarco.output_dim == 768
    assert (msmarco.pooling.mode, msmarco.max_length) == ("mean", MSMARCO_MAX_SEQ_LENGTH)  # from sentence_bert_config.json
    assert msmarco.tokenizer.tokenize("Hello") == ["hello"]


def test_random_init_reads_config_and_tokenizer_but_not_weights(hub_cache):
    pretrained = finetuner.build_model(BERT_ID).tower()
    random = finetuner.build_model(BERT_ID, pretrained=False).tower()
    assert random.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    assert not torch.equal(random.encoder.embeddings.word_embeddings.weight, pretrained.encoder.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("name", [BERT_ID, f"hf:{MSMARCO_ID}"])
def test_missing_model_fails_at_once_saying_how_to_give_a_local_folder(empty_cache, name):
    with pytest.raises(finetuner.ModelNotAvailableError) as info:
        finetuner.build_model(name)
    message = str(info.value)
    assert "not available offline" in message and str(empty_cache / "hub") in message
    assert "hf:/path/to/folder" in message and "pretrained=False" in message


def test_missing_model_error_comes_before_transformers_is_imported(tmp_path):
    code = (
        "import sys, finetuner\n"
        "try:\n    finetuner.build_model('bert-base-cased')\n"
        "except finetuner.ModelNotAvailableError:\n    print('transformers' in sys.modules)\n"
    )
    result = run_python(code, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_hf_prefix_builds_any_folder_with_dim_from_its_config(tiny_folder):
    spec = finetuner.get_spec(f"hf:{tiny_folder}")
    assert (spec.output_dim, spec.task, spec.plugin) == (32, "text-to-text", "text")
    model = finetuner.build_model(f"hf:{tiny_folder}")
    assert model.output_dim == 32 and finetuner.encode(model, ["hello"]).shape == (1, 32)


def test_hf_prefix_reads_a_hub_id_from_the_cache(hub_cache):
    assert finetuner.get_spec(f"hf:{MSMARCO_ID}").output_dim == 768


def test_hf_prefix_errors(tmp_path):
    with pytest.raises(finetuner.ModelNotAvailableError, match="there is no folder"):
        finetuner.get_spec(f"hf:{tmp_path / 'absent'}")
    with pytest.raises(finetuner.ModelNotAvailableError, match="has no config.json"):
        finetuner.get_spec(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "odd"}))
    with pytest.raises(ValueError, match="hidden_size, dim, d_model"):
        finetuner.get_spec(f"hf:{tmp_path}")
    with pytest.raises(finetuner.UnknownNameError, match="hf:<model id or folder>"):
        finetuner.get_spec("hf:")


def test_names_outside_the_family_are_left_to_others():
    assert finetuner_text.plugin.finetuner_resolve_backbone("timm/resnet18", local_dir=None) is None


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_ignores_padding(tiny_folder, pooling):
    model = finetuner.build_model(f"hf:{tiny_folder}", pooling=pooling, normalize=False)
    tower = model.tower().eval()
    assert tower.pooling.mode == pooling
    features = tower.preprocess(["hello", LONG])
    assert features["attention_mask"][0].sum() < features["attention_mask"].shape[1]  # "hello" really is padded
    with torch.no_grad():
        tokens = tower.encoder(**tower.preprocess(["hello"])).last_hidden_state[0]  # unpadded token states
    expected = {"mean": tokens.mean(0), "cls": tokens[0], "max": tokens.max(0).values}[pooling]
    padded = finetuner.encode(model, ["hello", LONG], precision="fp32", batch_size=2)
    np.testing.assert_allclose(padded[0], expected.numpy(), atol=1e-5)


def test_unknown_pooling_is_rejected(tiny_folder):
    with pytest.raises(finetuner.UnknownNameError, match="pooling 'sum'"):
        finetuner.build_model(f"hf:{tiny_folder}", pooling="sum")


def test_sentence_transformers_pooling_config_picks_the_default(tmp_path):
    folder = write_bert(tmp_path / "st", hidden=32, cased=False)
    write_st_configs(folder, "cls", 40, dim=32)
    tower = finetuner_text.build_hf(folder)
    assert (tower.pooling.mode, tower.max_length) == ("cls", 40)
    assert finetuner_text.build_hf(folder, pooling="max", max_length=20).pooling.mode == "max"
    write_st_configs(folder, "mean", 40, dim=32, pooling_mode_mean_sqrt_len_tokens=True)
    with pytest.raises(ValueError, match="pooling_mode_mean_sqrt_len_tokens.*pass pooling="):
        finetuner_text.build_hf(folder)
    pooling_file = folder / "1_Pooling" / "config.json"
    pooling_file.write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "max"}))  # sentence-transformers 5+
    assert finetuner_text.build_hf(folder).pooling.mode == "max"
    pooling_file.write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "lasttoken"}))
    assert finetuner_text.build_hf(folder).pooling.mode == "last"
    pooling_file.write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "weightedmean"}))
    with pytest.raises(ValueError, match="weightedmean"):
        finetuner_text.build_hf(folder)


def test_batches_are_padded_to_their_longest_text_and_long_texts_truncate(tiny_folder):
    tower = finetuner_text.build_hf(tiny_folder, max_length=16)
    short = tower.preprocess(["hello", "hello world"])
    assert short["input_ids"].shape == (2, 4)  # [CLS] hello world [SEP], not max_length
    assert short["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert tower.preprocess([LONG])["input_ids"].shape == (1, 16)
    model = finetuner.EmbeddingModel({"text": tower})
    embeddings = finetuner.encode(model, ["", LONG, "hello"])
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_max_length_beyond_the_model_limit_is_rejected(tiny_folder):
    with pytest.raises(ValueError, match=f"max_length must be an int from 1 to {MAX_POSITIONS}"):
        finetuner_text.build_hf(tiny_folder, max_length=MAX_POSITIONS + 1)


@pytest.mark.parametrize("bad", [None, 3, 2.5, b"bytes"])
def test_a_non_string_item_is_a_data_error_naming_its_index(tiny_folder, bad):
    model = finetuner.build_model(f"hf:{tiny_folder}")
    with pytest.raises(finetuner.DataError, match=f"text item 1 is {type(bad).__name__}"):
        model.tower().preprocess(["fine", bad])
    with pytest.raises(finetuner.DataError):
        finetuner.encode(model, ["fine", "also fine", bad])


class CountingTokenizer:
    """The tower's tokenizer, counting the texts it is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.texts = tokenizer, 0

    def __call__(self, texts, **options):
        self.texts += len(texts)
        return self.tokenizer(texts, **options)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


TEXTS = ["a", LONG, "hello world", "the query", "xyz", "search text", "the document of a longer query", "b", "text"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_inference_batches_tokenize_each_text_once_and_match_preprocess(tiny_folder, monkeypatch, side):
    tower = finetuner_text.build_hf(tiny_folder, max_length=16)
    tower.tokenizer.padding_side = side
    monkeypatch.setattr(finetuner_text.hf, "SORT_WINDOW_BATCHES", 2)  # windows of 4 texts
    tower.tokenizer = counting = CountingTokenizer(tower.tokenizer)
    batches = list(tower.batches(TEXTS, batch_size=2))
    assert counting.texts == len(TEXTS)
    positions = [p for chunk, _ in batches for p in chunk]
    assert sorted(positions) == list(range(len(TEXTS)))
    for number, (chunk, features) in enumerate(batches):
        assert set(chunk) <= set(range(4 * (number // 2), 4 * (number // 2) + 4))  # within its window
        expected = tower.preprocess([TEXTS[p] for p in chunk])
        assert features.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(features[key], value), (key, chunk)
    lengths = [features["attention_mask"].sum(1).tolist() for _, features in batches[:2]]  # the first window
    assert lengths[0][0] == 16 and min(lengths[0]) >= max(lengths[1])  # longest first, cut at max_length


def test_a_non_string_item_in_encode_is_named_by_its_position(tiny_folder):
    model = finetuner.build_model(f"hf:{tiny_folder}")
    with pytest.raises(finetuner.DataError, match="text item 2 is NoneType"):
        finetuner.encode(model, ["fine", "also fine", None])


def test_long_texts_stop_at_max_length_without_a_warning(tiny_folder, capfd):
    tower = finetuner_text.build_hf(tiny_folder, max_length=16)
    [(_, features)] = tower.batches([LONG], batch_size=4)
    assert features["input_ids"].shape == (1, 16)
    assert "sequence length is longer" not in capfd.readouterr().err


def test_encode_keeps_input_order(tiny_folder):
    model = finetuner.build_model(f"hf:{tiny_folder}")
    texts = ["a", LONG, "hello world", "the query"]
    together = finetuner.encode(model, texts, batch_size=2, precision="fp32")
    one_by_one = np.concatenate([finetuner.encode(model, [t], precision="fp32") for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_save_files_rebuild_the_tower_offline(tiny_folder, tmp_path):
    tower = finetuner_text.build_hf(tiny_folder, pooling="max", max_length=24)
    tower.save_files(tmp_path)
    assert {"config.json", "tokenizer.json", "sentence_bert_config.json"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "1_Pooling" / "config.json").read_text())["pooling_mode_max_tokens"] is True
    rebuilt = finetuner_text.build_hf("no/such-model", pretrained=False, local_dir=tmp_path)
    assert (rebuilt.pooling.mode, rebuilt.max_length, rebuilt.output_dim) == ("max", 24, 32)
    assert rebuilt.preprocess([LONG])["input_ids"].tolist() == tower.preprocess([LONG])["input_ids"].tolist()


def test_save_load_round_trip_gives_equal_embeddings(tiny_folder, tmp_path):
    model = finetuner.build_model(f"hf:{tiny_folder}", pooling="cls", max_length=32)
    texts = ["hello world", LONG, ""]
    finetuner.save(model, tmp_path / "artifact")
    loaded = finetuner.load(tmp_path / "artifact")
    assert (loaded.tower().pooling.mode, loaded.tower().max_length) == ("cls", 32)
    np.testing.assert_allclose(
        finetuner.encode(loaded, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )


def test_an_hf_folder_model_loads_from_its_artifact_after_the_folder_is_gone(tiny_folder, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_folder, source)
    model = finetuner.build_model(f"hf:{source}")
    finetuner.save(model, tmp_path / "artifact")
    shutil.rmtree(source)
    loaded = finetuner.load(tmp_path / "artifact")
    texts = ["a search query", LONG]
    np.testing.assert_allclose(
        finetuner.encode(loaded, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )
    with pytest.raises(finetuner.ModelNotAvailableError):  # building from the name still needs the source
        finetuner.build_model(f"hf:{source}")


def test_a_registered_model_loads_from_its_artifact_without_the_cache(hub_cache, tmp_path, monkeypatch):
    model = finetuner.build_model(MSMARCO_ID)
    finetuner.save(model, tmp_path / "artifact")
    empty = tmp_path / "empty_home"
    empty.mkdir()
    use_hf_home(monkeypatch, empty)
    loaded = finetuner.load(tmp_path / "artifact")
    texts = ["a search query", "the document"]
    np.testing.assert_allclose(
        finetuner.encode(loaded, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )


def test_bf16_inference_runs_a_bf16_copy_that_follows_weight_changes(tiny_folder):
    model = finetuner.build_model(f"hf:{tiny_folder}")
    tower = model.tower()
    texts = ["hello world", LONG, "the query"]

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        return float((a * b).sum(1).min())  # embeddings are unit length: the lowest cosine

    before = finetuner.encode(model, texts, precision="bf16")
    assert agree(before, finetuner.encode(model, texts, precision="fp32")) > 0.99
    _, copy = tower.__dict__["_bf16_copy"]
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    assert not any("_bf16" in k for k in model.state_dict())  # never saved
    with torch.no_grad():  # an in-place update, as an optimizer step does
        tower.encoder.embeddings.word_embeddings.weight.mul_(-1)
    after = finetuner.encode(model, texts, precision="bf16")
    assert agree(after, finetuner.encode(model, texts, precision="fp32")) > 0.99
    assert agree(after, before) < 0.99
    model.train()
    model(tower.preprocess(texts)).sum().backward()  # a training step frees the copy
    assert "_bf16_copy" not in tower.__dict__ and tower.encoder.embeddings.word_embeddings.weight.grad is not None
