"""`finetuner export --transformers`: a CLIP or SigLIP artifact becomes one folder transformers loads, same embeddings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import finetuner
from finetuner.cli import main
from tests.hubcache import use_hf_home
from tests.multimodal.tiny_dual import write_tiny_align, write_tiny_siglip

NAME = "openai/clip-vit-base-patch32"
TEXTS = ["a photo of a cat", "a red car", "dog"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(4)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(2)]


def run_card_usage(folder: Path, workdir: Path, monkeypatch) -> dict[str, Any]:
    """Run the export's README "With transformers" block as printed, in ``workdir`` beside a cat.jpg; its variables."""
    card = (folder / "README.md").read_text()
    (code,) = re.findall(r"With transformers[^\n]*:\n\n```python\n(.*?)```", card, re.S)
    _images()[0].save(workdir / "cat.jpg")
    monkeypatch.chdir(workdir)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace


def test_a_clip_artifact_loads_in_transformers_with_equal_embeddings(clip_cache, tmp_path, monkeypatch):
    from transformers import CLIPModel, CLIPProcessor

    model = finetuner.build_model(NAME)
    with torch.no_grad():
        model.logit_scale.fill_(4.2)  # as if training had moved it
        model.tower("text").text_projection.weight.mul_(1.5)  # and the weights
    finetuner.save(model, tmp_path / "artifact")
    assert main(["export", "--transformers", str(tmp_path / "artifact"), "-o", str(tmp_path / "hf")]) == 0

    use_hf_home(monkeypatch, tmp_path / "no_cache")  # the folder alone is enough
    clip = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    processor = CLIPProcessor.from_pretrained(tmp_path / "hf")
    assert float(clip.logit_scale.detach()) == pytest.approx(4.2)
    images = _images()
    inputs = processor(text=TEXTS, return_tensors="pt", padding=True)
    # The same pixels: the processor resizes PIL images with PIL, the tower resizes tensors (a preprocessing difference).
    pixels = model.tower("image").preprocess(images)["pixel_values"]
    with torch.no_grad():
        text = clip.get_text_features(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).pooler_output
        image = clip.get_image_features(pixel_values=pixels).pooler_output
    ours_text = finetuner.encode(model, TEXTS, modality="text", precision="fp32")
    ours_image = finetuner.encode(model, images, modality="image", precision="fp32")
    np.testing.assert_allclose(F.normalize(text, dim=-1).numpy(), ours_text, atol=1e-5)
    np.testing.assert_allclose(F.normalize(image, dim=-1).numpy(), ours_image, atol=1e-5)
    assert "library_name: transformers" in (tmp_path / "hf" / "README.md").read_text()
    card = run_card_usage(tmp_path / "hf", tmp_path, monkeypatch)
    np.testing.assert_allclose(card["texts"].numpy(), ours_text[:1], atol=1e-5)


def test_a_projection_head_or_another_tower_is_refused(clip_cache, tmp_path):
    with pytest.raises(finetuner.ExportError, match=r"projection head \(output_dim=64\)"):
        finetuner.export_transformers(finetuner.build_model(NAME, output_dim=64), tmp_path / "hf")
    joined = finetuner.build_model("dummy-text+dummy-image")
    with pytest.raises(finetuner.ExportError, match=r"the text tower \(TrigramTower\) cannot be exported to transformers"):
        finetuner.export_transformers(joined, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_a_siglip_artifact_loads_in_transformers_with_equal_embeddings(tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer, SiglipModel

    model = finetuner.build_model(f"hf-clip:{write_tiny_siglip(tmp_path / 'siglip')}")
    with torch.no_grad():
        model.logit_scale.fill_(3.3)  # as if training had moved it
        model.logit_bias.fill_(-7.5)
        model.tower("image").vision_model.head.mlp.fc2.weight.mul_(1.5)  # and the weights
    finetuner.save(model, tmp_path / "artifact")
    assert main(["export", "--transformers", str(tmp_path / "artifact"), "-o", str(tmp_path / "hf")]) == 0

    use_hf_home(monkeypatch, tmp_path / "no_cache")  # the folder alone is enough
    siglip = SiglipModel.from_pretrained(tmp_path / "hf").eval()
    assert type(AutoModel.from_pretrained(tmp_path / "hf")) is SiglipModel
    assert float(siglip.logit_scale.detach()) == pytest.approx(3.3)
    assert float(siglip.logit_bias.detach()) == pytest.approx(-7.5)
    # SigLIP's convention: texts padded to the full length, no attention mask
    tokens = AutoTokenizer.from_pretrained(tmp_path / "hf")(TEXTS, padding="max_length", return_tensors="pt")
    images = _images()
    pixels = model.tower("image").preprocess(images)["pixel_values"]
    with torch.no_grad():
        text = siglip.get_text_features(input_ids=tokens.input_ids).pooler_output
        image = siglip.get_image_features(pixel_values=pixels).pooler_output
    ours_text = finetuner.encode(model, TEXTS, modality="text", precision="fp32")
    ours_image = finetuner.encode(model, images, modality="image", precision="fp32")
    np.testing.assert_allclose(F.normalize(text, dim=-1).numpy(), ours_text, atol=1e-5)
    np.testing.assert_allclose(F.normalize(image, dim=-1).numpy(), ours_image, atol=1e-5)
    card = run_card_usage(tmp_path / "hf", tmp_path, monkeypatch)  # no attention mask, texts padded to the full length
    np.testing.assert_allclose(card["texts"].numpy(), ours_text[:1], atol=1e-5)


def test_align_and_open_clip_models_are_refused_naming_what_works(tmp_path, monkeypatch):
    align = finetuner.build_model(f"hf-clip:{write_tiny_align(tmp_path / 'align')}")
    with pytest.raises(finetuner.ExportError, match=r"\(DualTextTower\) cannot be exported to transformers.*ONNX"):
        finetuner.export_transformers(align, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    pytest.importorskip("open_clip", reason="open-clip-torch (finetuner-multimodal[open_clip]) is not installed")
    from tests.multimodal.tiny_open_clip import register_tiny

    register_tiny(monkeypatch)
    open_clip = finetuner.build_model("open_clip/Tiny-test", pretrained=False)
    with pytest.raises(finetuner.ExportError, match=r"\(OpenClipTextTower\) cannot be exported to transformers.*ONNX"):
        finetuner.export_transformers(open_clip, tmp_path / "hf")
