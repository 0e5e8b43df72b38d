"""Labeled-data losses from pytorch-metric-learning: by name, with miners, with parameters of their own."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from finetuner import UnknownNameError
from finetuner.losses import MetricLoss, build_loss, build_metric_loss, build_miner, metric_loss_names, miner_names


def build(name, **kwargs):
    return build_loss(name, kind="labeled", task="image-to-image", embedding_size=8, **kwargs)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=-1), torch.arange(12) % 4


def test_triplet_margin_loss_matches_a_hand_computed_value():
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    labels = torch.tensor([0, 0, 1])
    # triplets (anchor, positive, negative): (0, 1, 2) and (1, 0, 2); L2 distances, margin 0.05,
    # the mean over the triplets with a non-zero loss
    d01, d02, d12 = math.sqrt(0.8), math.sqrt(0.4), math.sqrt(0.08)
    expected = ((d01 - d02 + 0.05) + (d01 - d12 + 0.05)) / 2
    loss = build_metric_loss("TripletMarginLoss", embedding_size=2)
    assert loss(embeddings, labels).item() == pytest.approx(expected, rel=1e-5)


def test_the_default_labeled_loss_is_triplet_margin_and_equals_pml(batch):
    embeddings, labels = batch
    loss = build(None)
    assert loss.name == "TripletMarginLoss"
    assert loss(embeddings, labels=labels).item() == pytest.approx(pml_losses.TripletMarginLoss()(embeddings, labels).item())


@pytest.mark.parametrize("miner", ["MultiSimilarityMiner", "batchhard", "triplet_margin_miner"])
def test_miners_by_name_change_what_the_loss_sees(batch, miner):
    embeddings, labels = batch
    loss = build("TripletMarginLoss", miner=miner, margin=0.2)
    cls = getattr(pml_miners, {"batchhard": "BatchHardMiner", "triplet_margin_miner": "TripletMarginMiner"}.get(miner, miner))
    reference = pml_losses.TripletMarginLoss(margin=0.2)
    expected = reference(embeddings, labels, cls()(embeddings, labels)).item()
    assert loss(embeddings, labels=labels).item() == pytest.approx(expected, rel=1e-6)
    assert isinstance(loss.module.miner, cls)


def test_mining_changes_the_loss(batch):
    embeddings, labels = batch
    plain = build("TripletMarginLoss", margin=0.2)(embeddings, labels=labels).item()
    hardest = build("TripletMarginLoss", margin=0.2, miner="BatchHardMiner")(embeddings, labels=labels).item()
    assert hardest > plain


def test_miner_objects_and_options(batch):
    miner = build_miner("TripletMarginMiner", margin=0.3, type_of_triplets="hard")
    assert isinstance(miner, pml_miners.TripletMarginMiner) and miner.margin == 0.3
    own = pml_miners.BatchHardMiner()
    assert build("TripletMarginLoss", miner=own).module.miner is own
    with pytest.raises(UnknownNameError, match="BatchHardMiner"):
        build_miner("batch-hardd")
    assert "MultiSimilarityMiner" in miner_names()


@pytest.mark.parametrize("name", ["SupConLoss", "NTXentLoss", "MultiSimilarityLoss", "ContrastiveLoss", "CircleLoss"])
def test_pair_based_pml_losses_by_name_match_pml(batch, name):
    embeddings, labels = batch
    expected = getattr(pml_losses, name)()(embeddings, labels).item()
    assert build(name)(embeddings, labels=labels).item() == pytest.approx(expected, rel=1e-6)


def test_arcface_exposes_its_parameters_for_its_own_optimizer(batch):
    embeddings, labels = batch
    embeddings = embeddings.clone().requires_grad_()
    loss = build("arcface", num_classes=4)
    assert loss.name == "ArcFaceLoss" and loss.needs_optimizer and loss.lr_multiplier >= 10
    (weights,) = list(loss.parameters())
    assert weights.shape == (8, 4)
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1 * loss.lr_multiplier)
    before = loss(embeddings, labels=labels)
    before.backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0 and embeddings.grad.abs().sum() > 0
    optimizer.step()
    assert loss(embeddings, labels=labels).item() < before.item()


@pytest.mark.parametrize(
    "name", ["CosFaceLoss", "SubCenterArcFaceLoss", "ProxyAnchorLoss", "NormalizedSoftmaxLoss", "SoftTripleLoss", "P2SGradLoss"]
)
def test_losses_with_class_parameters_get_num_classes_and_embedding_size(batch, name):
    embeddings, labels = batch
    loss = build(name, num_classes=4)
    assert loss.needs_optimizer
    assert torch.isfinite(loss(embeddings, labels=labels))


def test_a_loss_needing_num_classes_says_so():
    with pytest.raises(ValueError, match="ArcFaceLoss needs num_classes"):
        build("ArcFaceLoss")
    with pytest.raises(ValueError, match=r"cannot build RankedListLoss .*'margin' and 'Tn'"):
        build("RankedListLoss")
    with pytest.raises(ValueError, match="cannot build TripletMarginLoss with options \\['no_such_option'\\]"):
        build("TripletMarginLoss", no_such_option=1)


def test_labels_are_checked(batch):
    embeddings, labels = batch
    arcface = build("ArcFaceLoss", num_classes=4)
    with pytest.raises(ValueError, match=r"num_classes=4: labels must lie in \[0, 4\)"):
        arcface(embeddings, labels=labels + 1)
    with pytest.raises(ValueError, match="embedding_size=8"):
        arcface(embeddings[:, :6], labels=labels)
    with pytest.raises(ValueError, match="integer tensor"):
        build("TripletMarginLoss")(embeddings, labels=labels.float())
    with pytest.raises(ValueError, match="N labels"):
        build("TripletMarginLoss")(embeddings, labels=labels[:5])


def test_a_pml_loss_object_is_wrapped_for_labeled_data(batch):
    embeddings, labels = batch
    own = pml_losses.MultiSimilarityLoss(alpha=1.0)
    loss = build(own, miner="MultiSimilarityMiner")
    assert loss.name == "MultiSimilarityLoss" and isinstance(loss.module, MetricLoss)
    expected = own(embeddings, labels, pml_miners.MultiSimilarityMiner()(embeddings, labels)).item()
    assert loss(embeddings, labels=labels).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="needs labeled items but the data is pairs"):
        build_loss(own, kind="pairs", task="text-to-text", embedding_size=8)
    with pytest.raises(ValueError, match="give its miner to build_metric_loss"):
        build(build_metric_loss("TripletMarginLoss", embedding_size=8), miner="BatchHardMiner")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # PML's own (HistogramLoss, LargeMarginSoftmax)
def test_every_listed_pml_loss_builds_and_runs(batch):
    embeddings, labels = batch
    required = {"RankedListLoss": {"margin": 0.4, "Tn": 1.0}}
    for name in metric_loss_names():
        loss = build(name, num_classes=4, **required.get(name, {}))
        assert torch.isfinite(loss(embeddings, labels=labels)), name
