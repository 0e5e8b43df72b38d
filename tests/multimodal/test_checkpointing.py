"""Gradient checkpointing of the two towers: the layers run again in backward, embeddings and gradients unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import finetuner
from tests.multimodal.tiny_dual import write_tiny_align, write_tiny_siglip

TEXTS = ["a photo of a cat", "a red car", "dog"]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(8)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]


def _build(family: str, folder, monkeypatch) -> finetuner.EmbeddingModel:
    if family == "clip":
        return finetuner.build_model("openai/clip-vit-base-patch32")
    if family == "siglip":
        return finetuner.build_model(f"hf-clip:{write_tiny_siglip(folder)}")
    pytest.importorskip("open_clip", reason="open-clip-torch (finetuner-multimodal[open_clip]) is not installed")
    from tests.multimodal.tiny_open_clip import register_tiny

    register_tiny(monkeypatch)
    return finetuner.build_model("open_clip/Tiny-test", pretrained=False)


def _first_layers(model: finetuner.EmbeddingModel) -> list[torch.nn.Module]:
    """The feed-forward part of each tower's first transformer block (inside what checkpointing recomputes)."""
    blocks = []
    for modality in ("text", "image"):
        for name, module in model.tower(modality).named_modules():
            if name.endswith(("layers.0.mlp", "resblocks.0.mlp")):
                blocks.append(module)
                break
    assert len(blocks) == 2
    return blocks


def _step(model: finetuner.EmbeddingModel) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], int]:
    """Embeddings, every weight's gradient, and how often the first blocks ran, for one contrastive step."""
    runs = []
    hooks = [layer.register_forward_pre_hook(lambda *_: runs.append(1)) for layer in _first_layers(model)]
    model.zero_grad()
    texts = model(model.tower("text").preprocess(TEXTS), "text")
    images = model(model.tower("image").preprocess(_images()), "image")
    (texts @ images.T).logsumexp(1).sum().backward()
    for hook in hooks:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return texts.detach(), images.detach(), grads, len(runs)


@pytest.mark.parametrize("family", ["clip", "siglip", "open_clip"])
def test_checkpointing_recomputes_the_layers_and_changes_nothing_else(family, clip_cache, tmp_path, monkeypatch):
    model = _build(family, tmp_path / family, monkeypatch).train()  # the tiny configs have no dropout
    texts, images, grads, runs = _step(model)
    assert runs == 2
    for modality in model.modalities:
        model.tower(modality).set_gradient_checkpointing(True)
    texts_on, images_on, grads_on, runs_on = _step(model)
    assert runs_on == 4  # each first block ran again during backward
    torch.testing.assert_close(texts_on, texts, atol=0, rtol=0)
    torch.testing.assert_close(images_on, images, atol=0, rtol=0)
    assert grads_on.keys() == grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grads_on[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    for modality in model.modalities:
        model.tower(modality).set_gradient_checkpointing(False)
    assert _step(model)[3] == 2


def test_towers_without_checkpointing_refuse_it_by_name(tmp_path, monkeypatch):
    align = finetuner.build_model(f"hf-clip:{write_tiny_align(tmp_path / 'align')}")
    align.tower("text").set_gradient_checkpointing(True)  # its BERT text encoder has it
    with pytest.raises(finetuner.OptionError, match=r"gradient_checkpointing: DualImageTower \(the image tower\)"):
        align.tower("image").set_gradient_checkpointing(True)  # EfficientNet has none
    pytest.importorskip("open_clip", reason="open-clip-torch (finetuner-multimodal[open_clip]) is not installed")
    from tests.multimodal.tiny_open_clip import register_tiny

    register_tiny(monkeypatch)
    resnet = finetuner.build_model("open_clip/Tiny-resnet-test", pretrained=False)
    resnet.tower("text").set_gradient_checkpointing(True)
    with pytest.raises(finetuner.OptionError, match=r"gradient_checkpointing: OpenClipImageTower \(the image tower\)"):
        resnet.tower("image").set_gradient_checkpointing(True)
