"""Optimizer construction: which parameters are weight-decayed."""

import pytest
import torch

from finetuner.training.optim import build_optimizer


def test_weight_decay_skips_biases_and_norm_weights():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = build_optimizer("adamw", model.parameters(), learning_rate=0.1, weight_decay=0.5)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(model[0].weight)] == 0.5
    assert decay[id(model[0].bias)] == decay[id(model[1].weight)] == decay[id(model[1].bias)] == 0.0
    assert len(decay) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["AdamW", "sgd"])
def test_zero_gradient_step_shrinks_only_decayed_parameters(name):
    layer = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    optimizer = build_optimizer(name, layer.parameters(), learning_rate=0.1, weight_decay=0.5)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(layer.bias, before["bias"])
    assert torch.all(layer.weight.abs() < before["weight"].abs())
