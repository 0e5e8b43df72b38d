"""SigLIPLoss against a hand computation; its parameters, lookup and choice as a backbone's default."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from finetuner.losses import SigLIPLoss, build_loss, default_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_siglip_loss_matches_a_hand_computation():
    texts = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # unnormalised: the loss uses cosines
    images = torch.tensor([[3.0, 0.0], [0.6, 0.8]])
    # cosines [[1, 0.6], [0, 0.8]]; logits 10 * cosine - 10 = [[0, -4], [-10, -2]]; diagonal pairs match
    expected = -(log_sigmoid(0.0) + log_sigmoid(4.0) + log_sigmoid(10.0) + log_sigmoid(-2.0)) / 2
    loss = SigLIPLoss()
    value = loss(texts, images)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    # d/db of -1/N sum log sigmoid(z * l) = -1/N sum z * sigmoid(-z * l)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    bias_grad = -(sigmoid(0.0) - sigmoid(-4.0) - sigmoid(-10.0) + sigmoid(2.0)) / 2
    assert loss.logit_bias.grad.item() == pytest.approx(bias_grad, rel=1e-5)
    # d/dt' is d/db with each term weighted by d l / d t' = exp(t') * cosine
    scale_grad = -10 * (1 * sigmoid(0.0) - 0.6 * sigmoid(-4.0) - 0 * sigmoid(-10.0) + 0.8 * sigmoid(2.0)) / 2
    assert loss.logit_scale.grad.item() == pytest.approx(scale_grad, rel=1e-5)


def test_siglip_starts_at_the_papers_temperature_and_bias_and_takes_others():
    assert SigLIPLoss().logit_scale.item() == pytest.approx(math.log(10.0))
    assert SigLIPLoss().logit_bias.item() == pytest.approx(-10.0)
    loss = build_loss("siglip", kind="pairs", task="text-to-image", embedding_size=4, logit_scale=2.0, logit_bias=-3.0)
    assert (loss.module.logit_scale.item(), loss.module.logit_bias.item()) == (2.0, -3.0)


def test_siglip_by_name_has_parameters_of_its_own_and_ignores_the_models_temperature():
    g = torch.Generator().manual_seed(0)
    texts, images = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    for name in ("SigLIPLoss", "siglip", "sigmoid", "SiglipLoss"):
        loss = build_loss(name, kind="pairs", task="text-to-image", embedding_size=3)
        assert loss.name == "SigLIPLoss" and loss.needs_optimizer and not loss.uses_logit_scale
    value = loss(texts, images, logit_scale=torch.tensor(5.0))
    assert value.item() == pytest.approx(SigLIPLoss()(texts, images).item())
    assert build_loss("siglip", kind="pairs", task="text-to-text", embedding_size=3).name == "SigLIPLoss"
    with pytest.raises(ValueError, match="needs pairs"):
        build_loss("siglip", kind="scored", task="text-to-text", embedding_size=3)


def test_siglip_training_pulls_pairs_together():
    g = torch.Generator().manual_seed(1)
    texts = torch.randn(6, 8, generator=g, requires_grad=True)
    images = torch.randn(6, 8, generator=g)
    loss = SigLIPLoss()
    optimizer = torch.optim.SGD([texts, *loss.parameters()], lr=0.5)
    first = loss(texts, images).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss(texts, images).backward()
        optimizer.step()
    assert loss(texts, images).item() < first


class _Tower(nn.Module):
    def __init__(self, default: str | None) -> None:
        super().__init__()
        self.default_loss = default


class _Model(nn.Module):
    def __init__(self, *defaults: str | None) -> None:
        super().__init__()
        self.towers = nn.ModuleDict({f"t{i}": _Tower(d) for i, d in enumerate(defaults)})


def test_a_model_whose_towers_name_siglip_trains_with_it_by_default():
    assert default_loss("pairs", "text-to-image", _Model("SigLIPLoss", "SigLIPLoss")) == "SigLIPLoss"
    assert default_loss("pairs", "text-to-image", _Model(None, None)) == "ClipLoss"
    assert default_loss("pairs", "text-to-image", _Model("SigLIPLoss", None)) == "ClipLoss"  # towers disagree
    assert default_loss("labeled", "image-to-image", _Model("SigLIPLoss")) == "TripletMarginLoss"  # pairs only
