"""Building CLIP through the real from_pretrained path, offline, from a hub-layout cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import CLIPModel

import finetuner
from tests.hubcache import use_hf_home
from tests.multimodal.tiny_clip import LOGIT_SCALE, write_tiny_clip

NAME = "openai/clip-vit-base-patch32"


def test_pretrained_build_splits_one_clip_into_two_towers(clip_cache):
    model = finetuner.build_model(NAME)
    reference = CLIPModel.from_pretrained(clip_cache)
    assert model.modalities == ["text", "image"] and model.task == "text-to-image"
    assert all(isinstance(model.tower(m), finetuner.Tower) for m in model.modalities)
    assert model.tower("text").output_dim == model.tower("image").output_dim == model.output_dim == 512
    # the learnable temperature is CLIP's, not the core's default
    assert float(model.logit_scale.detach()) == pytest.approx(LOGIT_SCALE)
    # every CLIP weight is held once: the towers plus the logit scale are exactly the CLIP model
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert torch.equal(model.tower("text").text_projection.weight, reference.text_projection.weight)
    assert torch.equal(model.tower("image").visual_projection.weight, reference.visual_projection.weight)


def test_pretrained_false_uses_the_cached_config_with_random_weights(clip_cache):
    model = finetuner.build_model(NAME, pretrained=False)
    reference = CLIPModel.from_pretrained(clip_cache)
    text = model.tower("text")
    assert text.text_model.config.hidden_size == reference.config.text_config.hidden_size == 32
    assert not torch.equal(text.text_projection.weight, reference.text_projection.weight)
    assert model.output_dim == 512


def test_pretrained_false_without_cached_config_uses_the_true_architecture(clip_cache):
    # only patch32's files are cached; the three models share its tokenizer
    model = finetuner.build_model("openai/clip-vit-base-patch16", pretrained=False)
    vision = model.tower("image").vision_model.config
    text = model.tower("text").text_model.config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (768, 12, 16, 224)
    assert (text.hidden_size, text.num_hidden_layers, text.max_position_embeddings) == (512, 12, 77)
    embeddings = finetuner.encode(model, ["a photo of a cat"], modality="text", precision="fp32")
    pixels = model.tower("image").preprocess([torch.rand(3, 300, 400)])["pixel_values"]
    assert embeddings.shape == (1, 512) and pixels.shape == (1, 3, 224, 224)


def test_pretrained_without_cache_fails_naming_alternatives(empty_cache):
    with pytest.raises(finetuner.ModelNotAvailableError) as info:
        finetuner.build_model(NAME)
    message = str(info.value)
    assert NAME in message and "not available offline" in message
    assert "pretrained=False" in message and "local_dir=" in message


def test_pretrained_without_cache_fails_before_importing_transformers(tmp_path):
    # a fresh process with only this plugin enabled, an empty cache and HF_HUB_OFFLINE=1
    code = (
        "import sys, importlib.metadata as md, os\n"
        "others = [e.name for e in md.entry_points(group='finetuner') if e.name != 'multimodal']\n"
        "os.environ['FINETUNER_DISABLE_PLUGINS'] = ','.join(others)\n"
        "import finetuner\n"
        "try:\n"
        f"    finetuner.build_model({NAME!r})\n"
        "except finetuner.ModelNotAvailableError as exc:\n"
        "    print('transformers' in sys.modules, 'not available offline' in str(exc))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_missing_weights_name_the_cached_clip_models(tmp_path, monkeypatch):
    write_tiny_clip(tmp_path, NAME)
    write_tiny_clip(tmp_path, "openai/clip-vit-base-patch16", weights=False)
    use_hf_home(monkeypatch, tmp_path)
    with pytest.raises(finetuner.ModelNotAvailableError, match=f"the cached CLIP models {NAME}"):
        finetuner.build_model("openai/clip-vit-base-patch16")
    # its config and tokenizer are cached, so random init still works, with that config
    model = finetuner.build_model("openai/clip-vit-base-patch16", pretrained=False)
    assert model.tower("text").text_model.config.hidden_size == 32


def test_pretrained_false_without_any_tokenizer_is_not_available(empty_cache):
    with pytest.raises(finetuner.ModelNotAvailableError, match="tokenizer"):
        finetuner.build_model(NAME, pretrained=False)


def test_pretrained_from_a_local_save_pretrained_folder(clip_cache, empty_cache):
    # empty_cache comes last, so the hub cache is empty and only local_dir has the model
    model = finetuner.build_model(NAME, local_dir=str(clip_cache))
    assert float(model.logit_scale.detach()) == pytest.approx(LOGIT_SCALE)


def test_max_length_is_checked_against_the_text_positions(clip_cache):
    with pytest.raises(finetuner.PluginError, match="max_length must be between 3 and 77"):
        finetuner.build_model(NAME, max_length=100)


def test_contrastive_step_trains_both_towers_and_the_temperature(clip_cache):
    model = finetuner.build_model(NAME)
    model.train()
    texts = model(model.tower("text").preprocess(["a cat", "a dog", "a red car"]), "text")
    images = model(model.tower("image").preprocess([torch.rand(3, 32, 32) for _ in range(3)]), "image")
    logits = model.logit_scale.exp() * texts @ images.T
    target = torch.arange(3)
    loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    loss.backward()
    for parameter in (
        model.logit_scale,
        model.tower("text").text_projection.weight,
        model.tower("image").visual_projection.weight,
    ):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert model.tower("text").text_model.embeddings.token_embedding.weight.grad.abs().sum() > 0
    assert model.tower("image").vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
