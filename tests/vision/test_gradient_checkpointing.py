"""gradient_checkpointing on image towers: timm's changes neither embeddings nor gradients; torchvision's is refused."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import finetuner


def embed_and_backward(model: finetuner.EmbeddingModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(3)]
    model.train()
    torch.manual_seed(0)
    embeddings = model(model.tower().preprocess(images))
    (embeddings * torch.arange(1.0, 1 + embeddings.shape[1])).sum().backward()
    return embeddings.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_timm_checkpointing_changes_neither_embeddings_nor_gradients():
    plain = finetuner.build_model("timm/test_vit", pretrained=False)
    checkpointed = copy.deepcopy(plain)
    checkpointed.tower().set_gradient_checkpointing(True)
    assert checkpointed.tower().backbone.grad_checkpointing
    expected, expected_grads = embed_and_backward(plain)
    actual, grads = embed_and_backward(checkpointed)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert set(grads) == set(expected_grads)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_torchvision_towers_refuse_it_by_name():
    tower = finetuner.build_model("resnet50", pretrained=False).tower()
    with pytest.raises(finetuner.OptionError, match="gradient_checkpointing: ImageTower \\(the image tower\\) does not support it"):
        tower.set_gradient_checkpointing(True)
