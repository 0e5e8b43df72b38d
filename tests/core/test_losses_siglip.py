"""SigLIPLoss against a hand computation; the model's temperature and bias it trains; lookup and choice as a backbone's default."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import finetuner
from finetuner.losses import SigLIPLoss, build_loss, default_loss
from tests.core.helpers import coloured_images, topic_pairs


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def logits(scale: float = math.log(10.0), bias: float = -10.0) -> dict[str, nn.Parameter]:
    """A model's temperature and bias: SigLIP's initial values unless given."""
    return {"logit_scale": nn.Parameter(torch.tensor(scale)), "logit_bias": nn.Parameter(torch.tensor(bias))}


def test_siglip_loss_matches_a_hand_computation():
    texts = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # unnormalised: the loss uses cosines
    images = torch.tensor([[3.0, 0.0], [0.6, 0.8]])
    # cosines [[1, 0.6], [0, 0.8]]; logits 10 * cosine - 10 = [[0, -4], [-10, -2]]; diagonal pairs match
    expected = -(log_sigmoid(0.0) + log_sigmoid(4.0) + log_sigmoid(10.0) + log_sigmoid(-2.0)) / 2
    model = logits()
    value = SigLIPLoss()(texts, images, **model)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    # d/db of -1/N sum log sigmoid(z * l) = -1/N sum z * sigmoid(-z * l)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    bias_grad = -(sigmoid(0.0) - sigmoid(-4.0) - sigmoid(-10.0) + sigmoid(2.0)) / 2
    assert model["logit_bias"].grad.item() == pytest.approx(bias_grad, rel=1e-5)
    # d/dt' is d/db with each term weighted by d l / d t' = exp(t') * cosine
    scale_grad = -10 * (1 * sigmoid(0.0) - 0.6 * sigmoid(-4.0) - 0 * sigmoid(-10.0) + 0.8 * sigmoid(2.0)) / 2
    assert model["logit_scale"].grad.item() == pytest.approx(scale_grad, rel=1e-5)


def test_siglip_scores_with_the_models_temperature_and_bias():
    g = torch.Generator().manual_seed(0)
    texts, images = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    for name in ("SigLIPLoss", "siglip", "sigmoid", "SiglipLoss"):
        loss = build_loss(name, kind="pairs", task="text-to-image", embedding_size=3)
        assert loss.name == "SigLIPLoss" and loss.uses_logit_scale and loss.uses_logit_bias and not loss.needs_optimizer
    assert loss(texts, images, **logits(2.0, -3.0)).item() == pytest.approx(
        SigLIPLoss()(texts, images, **logits(2.0, -3.0)).item()
    )
    assert loss(texts, images, **logits(2.0, -3.0)).item() != pytest.approx(loss(texts, images, **logits()).item())
    with pytest.raises(ValueError, match="SigLIPLoss needs the model's logit_bias="):
        loss(texts, images, logit_scale=torch.tensor(1.0))
    assert build_loss("siglip", kind="pairs", task="text-to-text", embedding_size=3).name == "SigLIPLoss"
    with pytest.raises(ValueError, match="needs pairs"):
        build_loss("siglip", kind="scored", task="text-to-text", embedding_size=3)


def test_siglip_training_pulls_pairs_together():
    g = torch.Generator().manual_seed(1)
    texts = torch.randn(6, 8, generator=g, requires_grad=True)
    images = torch.randn(6, 8, generator=g)
    loss, model = SigLIPLoss(), logits()
    optimizer = torch.optim.SGD([texts, *model.values()], lr=0.5)
    first = loss(texts, images, **model).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss(texts, images, **model).backward()
        optimizer.step()
    assert loss(texts, images, **model).item() < first
    assert model["logit_bias"].item() != -10.0


def value(parameter: torch.Tensor) -> float:
    return float(parameter.detach())


FIT = {"epochs": 1, "batch_size": 4, "learning_rate": 0.05, "precision": "fp32", "device": "cpu", "verbose": False}


def test_fit_trains_the_models_temperature_and_bias_and_the_artifact_keeps_them(tmp_path):
    images, labels = coloured_images(8)
    captions = [(f"a {label} square, picture {i}", image) for i, (image, label) in enumerate(zip(images, labels, strict=True))]
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=8)
    assert model.logit_bias is None  # the dummy towers are no SigLIP: fit adds SigLIP's bias, keeps the temperature
    start = float(model.logit_scale.detach())
    tuned = finetuner.fit(model, captions, loss="siglip", output_dir=tmp_path / "two", **FIT)
    assert value(tuned.logit_bias) != -10.0 and value(tuned.logit_scale) != start  # both trained, from -10 and the model's
    loaded = finetuner.load(tmp_path / "two" / "model")
    assert (value(loaded.logit_scale), value(loaded.logit_bias)) == (value(tuned.logit_scale), value(tuned.logit_bias))
    texts = [t for t, _ in captions]
    np.testing.assert_allclose(finetuner.encode(loaded, texts, modality="text"), finetuner.encode(tuned, texts, modality="text"))

    one_tower = finetuner.fit("dummy-text", topic_pairs(16), loss="siglip", output_dir=tmp_path / "one", **FIT)
    assert one_tower.logit_scale is not None and value(one_tower.logit_bias) != -10.0  # a one-tower model gets both
    loaded = finetuner.load(tmp_path / "one" / "model")
    assert (value(loaded.logit_scale), value(loaded.logit_bias)) == (value(one_tower.logit_scale), value(one_tower.logit_bias))


def test_a_loss_without_a_bias_leaves_the_model_without_one(tmp_path):
    model = finetuner.fit("dummy-text", topic_pairs(16), **FIT)
    assert model.logit_bias is None and model.logit_scale is None
    model.add_logit_bias()
    assert (value(model.logit_scale), value(model.logit_bias)) == pytest.approx((math.log(10.0), -10.0))


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
