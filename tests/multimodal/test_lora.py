"""LoRA on CLIP and SigLIP towers: attention and feed-forward layers of both towers, frozen towers left alone."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import finetuner
from finetuner.lora import add_adapters, check_settings
from tests.core.helpers import coloured_images
from tests.multimodal.tiny_dual import write_tiny_siglip

NAME = "openai/clip-vit-base-patch32"
LAYERS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
TEXTS = ["a photo of a cat", "a red car"]


def _adapter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def _captioned() -> list[tuple[str, np.ndarray]]:
    images, labels = coloured_images(2)
    return [(f"a {label} photo", image) for image, label in zip(images, labels, strict=True)]


def test_clip_with_a_frozen_image_tower_adapts_its_text_tower_and_exports_merged(clip_cache, tmp_path):
    from transformers import CLIPModel

    options = {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "precision": "fp32", "verbose": False}
    model = finetuner.fit(NAME, _captioned(), output_dir=tmp_path / "run", lora=True, freeze="image", **options)
    assert model.lora["target_modules"] == {"text": LAYERS}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("towers.text.") and _adapter(n)} | {"logit_scale"}
    assert model.frozen_modalities() == ["image"]
    images = [image for _, image in _captioned()[:2]]
    text = finetuner.encode(model, TEXTS, modality="text", precision="fp32")
    image = finetuner.encode(model, images, modality="image", precision="fp32")
    loaded = finetuner.load(tmp_path / "run" / "model")
    np.testing.assert_allclose(finetuner.encode(loaded, TEXTS, modality="text", precision="fp32"), text, atol=1e-6)
    np.testing.assert_allclose(finetuner.encode(loaded, images, modality="image", precision="fp32"), image, atol=1e-6)
    assert loaded.frozen_modalities() == ["image"]

    clip = CLIPModel.from_pretrained(finetuner.export_transformers(tmp_path / "run" / "model", tmp_path / "hf")).eval()
    tokens = model.tower("text").preprocess(TEXTS)
    with torch.no_grad():
        features = clip.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
    np.testing.assert_allclose(F.normalize(features, dim=-1).numpy(), text, atol=1e-5)


def test_siglip_adapts_both_towers_and_every_adapter_weight_gets_a_gradient(tmp_path):
    model = finetuner.build_model(f"hf-clip:{write_tiny_siglip(tmp_path / 'siglip')}")
    add_adapters(model, check_settings(True))
    assert model.lora["target_modules"] == {"text": LAYERS, "image": LAYERS}
    adapters = {name: p for name, p in model.named_parameters() if _adapter(name)}
    # the pooling head's nn.MultiheadAttention reads its out_proj weights directly: an adapter there would never run
    assert not any(".head.attention." in name for name in adapters)
    assert any(".head.mlp.fc1." in name for name in adapters)
    images = [image for _, image in _captioned()[:2]]
    text = model(model.tower("text").preprocess(TEXTS), "text")
    image = model(model.tower("image").preprocess(images), "image")
    (text @ image.T).sum().backward()
    assert all(p.grad is not None for p in adapters.values())
    assert all(p.grad is None for name, p in model.named_parameters() if not _adapter(name) and name != "logit_scale")
