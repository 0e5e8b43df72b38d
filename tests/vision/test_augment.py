"""Training-time augmentation of image towers: seeded per item, on when fit() asks (off by default), off for encoding."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402
from finetuner.training.layer_decay import tower_depths  # noqa: E402
from tests.core.helpers import coloured_images  # noqa: E402

VIT = "timm/test_vit"  # a few blocks, 64 wide; at 32x32 pixels it trains in a fraction of a second


def vit(**options):
    return finetuner.build_model(VIT, pretrained=False, image_size=32, **options)


def fit(model, **options):
    images, labels = coloured_images(n_per_class=4)
    options = {
        "kind": "labeled",
        "epochs": 1,
        "batch_size": 8,
        "samples_per_class": 2,
        "learning_rate": 1e-3,
        "output_dir": None,
        "verbose": False,
        **options,
    }
    return finetuner.fit(model, list(zip(images, labels, strict=True)), **options)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_augmented_items_depend_on_their_seed_alone_and_differ_from_eval_preprocessing(rgb_array):
    tower = vit().tower()
    augment = tower.augmentation({})
    items = [rgb_array, rgb_array[::-1].copy()]
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = augment(items, [11, 12])["pixel_values"]
    # the caller's generators are left as they were
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.get_rng_state(), state[2])
    torch.testing.assert_close(augment(items[::-1], [12, 11])["pixel_values"], first.flip(0), rtol=0, atol=0)
    assert not torch.equal(augment(items, [13, 14])["pixel_values"], first)
    evaluated = tower.preprocess(items)["pixel_values"]
    assert first.shape == evaluated.shape and not torch.equal(first, evaluated)


def test_augment_options_are_timms_and_unknown_ones_are_named():
    tower = vit().tower()
    assert tower.augmentation({"scale": [0.5, 1], "hflip": 0}).settings["scale"] == (0.5, 1)
    with pytest.raises(finetuner.UnknownNameError, match="unknown augment option 'scal'. Did you mean: scale"):
        tower.augmentation({"scal": (0.5, 1)})
    with pytest.raises(finetuner.OptionError, match="augment="):
        tower.augmentation({"scale": "x"})


def test_training_augments_when_asked_and_is_deterministic_with_the_seed():
    torch.manual_seed(0)
    start = vit()
    runs = []
    for options in ({"augment": True}, {"augment": True}, {"augment": True, "num_workers": 2}, {}):
        model = vit()
        model.load_state_dict(start.state_dict())
        runs.append(weights(fit(model, **options)))
    same, again, workers, plain = runs
    assert all(torch.equal(same[k], again[k]) for k in same)
    assert all(torch.equal(same[k], workers[k]) for k in same)  # DataLoader workers draw the same augmentations
    assert any(not torch.equal(same[k], plain[k]) for k in same)  # augmentation (off by default) changed what was trained on


def test_frozen_tower_with_augmentation_trains_its_head_without_the_cache(caplog):
    model = vit(output_dim=8, freeze=True)
    backbone = weights(model.towers)
    with caplog.at_level(logging.INFO, logger="finetuner"):
        fit(model, augment={"scale": (0.5, 1.0)})
    assert "frozen-embedding cache off: augmentation changes the images" in caplog.text
    assert "caching its embeddings" not in caplog.text
    assert all(torch.equal(v, model.towers.state_dict()[k]) for k, v in backbone.items())


def test_vit_blocks_are_numbered_for_layer_decay():
    tower = vit().tower()
    depths, top = tower_depths(tower, "the image tower")
    blocks = len(tower.backbone.blocks)
    assert top == blocks + 1
    assert depths["backbone.cls_token"] == depths["backbone.patch_embed.proj.weight"] == 0
    assert depths["backbone.blocks.0.attn.qkv.weight"] == 1
    assert depths[f"backbone.blocks.{blocks - 1}.mlp.fc2.bias"] == blocks
    assert depths["backbone.norm.weight"] == top


def test_layer_decay_refuses_a_cnn_naming_the_option():
    with pytest.raises(finetuner.TrainingError, match="layer_decay cannot number the layers of the image tower"):
        fit(finetuner.build_model("timm/test_resnet", pretrained=False), layer_decay=0.75, augment=False)
