"""Each CLIP tower holds its own half of the model only: every parameter gets a gradient from its modality alone."""

from __future__ import annotations

import torch

import finetuner

NAME = "openai/clip-vit-base-patch32"


def test_each_tower_trains_every_parameter_it_holds_from_its_own_inputs(clip_cache):
    model = finetuner.build_model(NAME)
    inputs = {"text": ["a photo of a cat", "a red car"], "image": [torch.rand(3, 32, 32) for _ in range(2)]}
    for modality, items in inputs.items():
        tower = model.tower(modality)
        model.zero_grad(set_to_none=True)
        model(tower.preprocess(items), modality).sum().backward()
        assert [name for name, p in tower.named_parameters() if p.grad is None] == []
        other = model.tower("image" if modality == "text" else "text")
        assert all(p.grad is None for p in other.parameters())  # no weight of the other tower is on this path
