"""Training-time augmentation of the image towers: timm's training transform at each model's own size and normalisation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import finetuner
from finetuner.models import ImageAugmentation
from tests.multimodal.tiny_dual import write_tiny_align, write_tiny_siglip

NAME = "openai/clip-vit-base-patch32"
# no random transform at all: the whole (square) image, unflipped, uncoloured
IDENTITY = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0.0, "color_jitter": None}


def _pictures(count: int = 3, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _image_tower(family: str, folder) -> finetuner.models.Tower:
    if family == "clip":
        return finetuner.build_model(NAME).tower("image")
    if family == "open_clip":
        return finetuner.build_model("open_clip/Tiny-test", pretrained=False).tower("image")
    write = write_tiny_align if family == "align" else write_tiny_siglip
    return finetuner.build_model(f"hf-clip:{write(folder)}").tower("image")


@pytest.mark.parametrize("family", ["clip", "siglip", "align", "open_clip"])
def test_each_image_tower_augments_at_its_own_size_and_normalisation_and_by_seed(family, tmp_path, clip_cache, monkeypatch):
    if family == "open_clip":
        pytest.importorskip("open_clip", reason="open-clip-torch (finetuner-multimodal[open_clip]) is not installed")
        from tests.multimodal.tiny_open_clip import register_tiny

        register_tiny(monkeypatch)
    tower = _image_tower(family, tmp_path / family)
    images = _pictures()
    expected = tower.preprocess(images)["pixel_values"]
    # without random transforms, the features are the tower's own preprocessing (mean, std, size; ALIGN's [-1, 1])
    plain = tower.augmentation(IDENTITY)(images, [1, 2, 3])["pixel_values"]
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=0)
    augment = tower.augmentation({})
    python, numpy, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    first = augment(images, [1, 2, 3])["pixel_values"]
    assert first.shape == expected.shape
    torch.testing.assert_close(augment(images[::-1], [3, 2, 1])["pixel_values"], first.flip(0), atol=0, rtol=0)
    other = augment(images, [4, 5, 6])["pixel_values"]
    assert all(not torch.allclose(a, b) for a, b in zip(first, other, strict=True))
    # the caller's generators are left as they were
    assert random.getstate() == python and torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy[1].tolist()


def test_options_are_timms_and_bad_ones_are_named(clip_cache):
    tower = finetuner.build_model(NAME).tower("image")
    assert isinstance(tower.augmentation({"scale": [0.5, 1.0]}), ImageAugmentation)
    with pytest.raises(finetuner.UnknownNameError, match="augment option 'scael'"):
        tower.augmentation({"scael": (0.5, 1.0)})
    with pytest.raises(finetuner.OptionError, match="augment=.*does not make a timm training transform"):
        tower.augmentation({"auto_augment": "no-such-policy"})


def test_siglip2_naflex_has_no_augmentation(tmp_path):
    model = finetuner.build_model(f"hf-clip:{write_tiny_siglip(tmp_path / 's2', model_type='siglip2')}", pretrained=False)
    assert model.tower("image").augmentation({}) is None


def test_fit_trains_a_clip_with_augmented_images_and_checkpointed_towers(clip_cache, monkeypatch):
    calls = []
    original = ImageAugmentation.__call__

    def counted(self, items, seeds):
        calls.append(list(seeds))
        return original(self, items, seeds)

    monkeypatch.setattr(ImageAugmentation, "__call__", counted)
    data = [(text, image) for text, image in zip(["a photo of a cat", "a red car", "dog"] * 2, _pictures(6, 40), strict=True)]
    model = finetuner.build_model(NAME)
    before = model.tower("image").vision_model.embeddings.patch_embedding.weight.detach().clone()
    tuned = finetuner.fit(
        model,
        data,
        output_dir=None,
        epochs=1,
        batch_size=3,
        augment=True,
        gradient_checkpointing=True,
        precision="fp32",
        device="cpu",
        verbose=False,
    )
    losses = [h["loss"] for h in tuned.history if "loss" in h]
    assert losses and all(np.isfinite(losses))
    assert sum(map(len, calls)) >= len(data)  # the training images went through the augmentation
    assert not torch.equal(tuned.tower("image").vision_model.embeddings.patch_embedding.weight, before)
    layers = [m for m in tuned.modules() if hasattr(m, "gradient_checkpointing")]
    assert layers and not any(m.gradient_checkpointing for m in layers)  # the model comes back as it went in
