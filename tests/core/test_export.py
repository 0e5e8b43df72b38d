"""ONNX export: graphs that reproduce torch, inputs named as the tower's preprocessing, onnxruntime encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import finetuner
from finetuner.cli import main
from finetuner.errors import ArtifactError, ExportError
from finetuner.export import export_onnx

onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")

TEXTS = ["short", "", "a much longer text with many words " * 4, "tiny", "medium length text here", "another one", "x y z"]


def images(count: int = 7) -> list:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, size=(12 + 3 * i, 20, 3), dtype=np.uint8) for i in range(count)]


def graph_inputs(path) -> dict[str, list]:
    """Input name -> dims (a name for a dynamic axis, an int for a fixed one) as the ONNX file declares them."""
    model = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("backbone", "items"), [("dummy-text", TEXTS), ("dummy-image", images())])
def test_export_reproduces_torch_and_encodes_the_same(tmp_path, backbone, items):
    torch.manual_seed(0)
    model = finetuner.build_model(backbone, output_dim=8)  # the projection head is part of the graph
    finetuner.save(model, tmp_path / "model")
    assert main(["export", "--onnx", str(tmp_path / "model"), "--quantize", "int8"]) == 0
    modality = model.modalities[0]
    folder = tmp_path / "model" / "onnx"
    index = json.loads((folder / "towers.json").read_text())
    keys = list(model.tower().preprocess(items[:2]))
    assert list(index) == [modality] and index[modality]["inputs"] == keys
    assert index[modality]["max_abs_diff"] <= 1e-4
    declared = graph_inputs(folder / f"{modality}.onnx")
    assert list(declared) == keys
    assert all(isinstance(dims[0], str) for dims in declared.values())  # a dynamic first (batch or length) axis
    expected = finetuner.encode(model, items, precision="fp32", batch_size=3)
    exported = finetuner.encode(tmp_path / "model", items, backend="onnx", batch_size=3)
    np.testing.assert_allclose(exported, expected, atol=1e-4)
    quantised = finetuner.encode(tmp_path / "model", items, backend="onnx-int8", batch_size=3)
    assert cosines(quantised, expected).min() > 0.98


def test_text_token_axes_are_dynamic(tmp_path):
    """A text tower with [batch, sequence] inputs (like a transformer's input_ids) gets both axes dynamic."""
    model = finetuner.EmbeddingModel({"text": PaddedTokens()})
    export_onnx(model, tmp_path / "onnx")
    assert graph_inputs(tmp_path / "onnx" / "text.onnx") == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
    }
    np.testing.assert_allclose(
        finetuner.encode(model, TEXTS, backend="onnx"), finetuner.encode(model, TEXTS, precision="fp32"), atol=1e-5
    )


def test_two_towers_export_both(tmp_path):
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=8)
    folder = export_onnx(model, tmp_path / "onnx")
    assert sorted(json.loads((folder / "towers.json").read_text())) == ["image", "text"]
    np.testing.assert_allclose(
        finetuner.encode(model, images(3), backend="onnx"), finetuner.encode(model, images(3), precision="fp32"), atol=1e-4
    )
    np.testing.assert_allclose(
        finetuner.encode(model, TEXTS, backend="onnx"), finetuner.encode(model, TEXTS, precision="fp32"), atol=1e-4
    )


def test_a_graph_that_does_not_reproduce_torch_fails_loudly_and_writes_nothing(tmp_path):
    model = finetuner.EmbeddingModel({"text": PaddedTokens(shape_branch=True)})
    with pytest.raises(ExportError, match="text tower differs from torch"):
        export_onnx(model, tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_encode_with_onnx_needs_an_export(tmp_path):
    finetuner.save(finetuner.build_model("dummy-text"), tmp_path / "model")
    with pytest.raises(ArtifactError, match="finetuner export --onnx"):
        finetuner.encode(tmp_path / "model", TEXTS, backend="onnx")
    export_onnx(tmp_path / "model")
    with pytest.raises(ArtifactError, match="--quantize int8"):
        finetuner.encode(tmp_path / "model", TEXTS, backend="onnx-int8")
    with pytest.raises(finetuner.UnknownNameError, match="backend"):
        finetuner.encode(tmp_path / "model", TEXTS, backend="tensorrt")
    assert finetuner.load(tmp_path / "model").output_dim == 16  # the artifact still loads with onnx/ inside


def test_encode_command_with_the_onnx_backend(tmp_path):
    finetuner.save(finetuner.build_model("dummy-text"), tmp_path / "model")
    export_onnx(tmp_path / "model")
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:4]) + "\n")
    assert (
        main(["encode", str(tmp_path / "model"), str(tmp_path / "texts.txt"), "-o", str(tmp_path / "e.npy"), "--backend", "onnx"])
        == 0
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "e.npy"), finetuner.encode(tmp_path / "model", TEXTS[:4], precision="fp32"), atol=1e-5
    )


def test_minilm_exports_within_1e4_and_int8_stays_close(tmp_path):
    if "all-MiniLM-L6-v2" not in [spec.name for spec in finetuner.list_models()]:
        pytest.skip("all-MiniLM-L6-v2 is not registered (the examples/custom-backbone plugin is not installed)")
    model = finetuner.build_model("all-MiniLM-L6-v2")
    finetuner.save(model, tmp_path / "model")
    folder = export_onnx(tmp_path / "model", quantize="int8")
    entry = json.loads((folder / "towers.json").read_text())["text"]
    assert entry["inputs"] == list(model.tower().preprocess(["a"]))
    assert entry["max_abs_diff"] <= 1e-4
    texts = [f"sentence {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 5) for i in range(20)]
    expected = finetuner.encode(model, texts, precision="fp32", batch_size=8)
    np.testing.assert_allclose(finetuner.encode(tmp_path / "model", texts, backend="onnx", batch_size=8), expected, atol=1e-4)
    assert cosines(finetuner.encode(tmp_path / "model", texts, backend="onnx-int8", batch_size=8), expected).min() > 0.98


class PaddedTokens(finetuner.Tower):
    """Characters as padded token ids with an attention mask; ``shape_branch`` adds a batch-size branch the tracer bakes in."""

    modality = "text"
    output_dim = 6

    def __init__(self, shape_branch: bool = False) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(128, 6)
        self.shape_branch = shape_branch

    def preprocess(self, items):
        longest = max(1, *(len(t) for t in items))
        ids = torch.zeros(len(items), longest, dtype=torch.long)
        for row, text in enumerate(items):
            ids[row, : len(text)] = torch.tensor([ord(c) % 128 for c in text], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}

    def forward(self, features):
        mask = features["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embedding(features["input_ids"]) * mask).sum(1) / mask.sum(1).clamp(min=1)
        if self.shape_branch and features["input_ids"].shape[0] > 2:  # traced with 2 rows: this branch vanishes
            pooled = pooled + torch.arange(6.0)
        return pooled

    def item_cost(self, item):
        return len(item)
