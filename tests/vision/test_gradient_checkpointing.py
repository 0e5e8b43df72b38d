"""gradient_checkpointing on image towers: timm's changes neither embeddings nor gradients; torchvision's is refused."""

from __future__ import annotations

import numpy as np
import pytest

import finetuner
from tests.core.helpers import assert_checkpointing_changes_nothing


def test_timm_checkpointing_changes_neither_embeddings_nor_gradients():
    model = finetuner.build_model("timm/test_vit", pretrained=False)
    images = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(3)]
    assert_checkpointing_changes_nothing(model, images)
    model.tower().set_gradient_checkpointing(True)
    assert model.tower().backbone.grad_checkpointing


def test_torchvision_towers_refuse_it_by_name():
    tower = finetuner.build_model("resnet50", pretrained=False).tower()
    message = "gradient_checkpointing: ImageTower \\(the image tower\\) does not support it"
    with pytest.raises(finetuner.OptionError, match=message):
        tower.set_gradient_checkpointing(True)
