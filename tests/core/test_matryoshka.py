"""MatryoshkaLoss against the hand sum of its inner loss per truncation; truncate(); dims validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finetuner
from finetuner.errors import ArtifactError, OptionError
from finetuner.losses import ClipLoss, CoSENTLoss, Loss, MultipleNegativesRankingLoss, build_loss
from finetuner.losses.matryoshka import MatryoshkaLoss
from finetuner.training.options import FitOptions
from finetuner.truncation import check_matryoshka_dims, truncate
from tests.core.helpers import topic_pairs

DIMS = (16, 8, 4)


def sides(n: int = 6, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randn(n, dim, generator=generator)


def test_truncate_keeps_the_first_dims_and_renormalises() -> None:
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    cut = truncate(x, 4)
    assert cut.shape == (5, 4) and cut.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(cut * np.linalg.norm(x[:, :4], axis=1, keepdims=True), x[:, :4], rtol=1e-5)
    np.testing.assert_array_equal(truncate(x, 4, normalize=False), x[:, :4])
    t = torch.from_numpy(x)
    torch.testing.assert_close(truncate(t, 4), torch.from_numpy(cut))


def test_truncate_refuses_a_dim_above_the_output_dim() -> None:
    x = np.ones((2, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="truncate_dim=13 is larger than the output dimension 12; valid: 1 to 12"):
        truncate(x, 13)
    with pytest.raises(ValueError, match="truncate_dim must be an integer from 1 to 12, got 0"):
        truncate(x, 0)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((8, 16), "strictly descending"),
        ((16, 16), "strictly descending"),
        ((32, 8), "matryoshka_dims=32 is larger than the output dimension 16; valid: 1 to 16"),
        ((8, 0), "matryoshka_dims must be an integer from 1 to 16, got 0"),
        ((), "at least one"),
        ("64", "list of dimensions"),
    ],
)
def test_dims_validation_names_matryoshka_dims(dims: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_matryoshka_dims(dims, 16)
    with pytest.raises(ValueError, match=message):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), dims, output_dim=16)


def test_dims_above_the_embeddings_fail_at_the_first_call() -> None:
    loss = MatryoshkaLoss(MultipleNegativesRankingLoss(), (32, 16))  # output_dim unknown when built
    with pytest.raises(ValueError, match="matryoshka_dims=32 is larger than the output dimension 16"):
        loss(*sides())


def hand_sum(inner: Loss, weights: tuple[float, ...], left: torch.Tensor, right: torch.Tensor | None, **kw) -> torch.Tensor:
    total = torch.zeros(())
    for dim, weight in zip(DIMS, weights, strict=True):
        cut_right = None if right is None else F.normalize(right[:, :dim], dim=-1)
        total = total + weight * inner(F.normalize(left[:, :dim], dim=-1), cut_right, **kw)
    return total


@pytest.mark.parametrize("weights", [None, (1.0, 0.5, 0.25)])
def test_pairs_loss_equals_the_hand_sum(weights: tuple[float, ...] | None) -> None:
    inner = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=16)
    loss = MatryoshkaLoss(inner, DIMS, weights, output_dim=16)
    left, right = sides()
    expected = hand_sum(inner, weights or (1.0,) * 3, left, right)
    torch.testing.assert_close(loss(left, right), expected)
    assert loss.kind == "pairs" and loss.name == "MatryoshkaLoss(MultipleNegativesRankingLoss, matryoshka_dims=[16, 8, 4])"


def test_scored_clip_and_labeled_losses_equal_the_hand_sum() -> None:
    left, right = sides()
    scores = torch.tensor([0.1, 0.9, 0.3, 0.5, 0.7, 0.2])
    scored = Loss(CoSENTLoss(), name="CoSENTLoss", kind="scored")
    torch.testing.assert_close(
        MatryoshkaLoss(CoSENTLoss(), DIMS)(left, right, scores=scores), hand_sum(scored, (1.0,) * 3, left, right, scores=scores)
    )
    clip = Loss(ClipLoss(), name="ClipLoss", kind="pairs")
    scale = torch.tensor(2.0)
    torch.testing.assert_close(
        MatryoshkaLoss(clip, DIMS)(left, right, logit_scale=scale), hand_sum(clip, (1.0,) * 3, left, right, logit_scale=scale)
    )
    labeled = build_loss("TripletMarginLoss", kind="labeled", task="text-to-text", embedding_size=16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    torch.testing.assert_close(
        MatryoshkaLoss(labeled, DIMS)(left, labels=labels), hand_sum(labeled, (1.0,) * 3, left, None, labels=labels)
    )


def test_gradient_reaches_every_dimension_and_the_logit_scale() -> None:
    left, right = sides()
    left.requires_grad_(True)
    scale = torch.tensor(2.0, requires_grad=True)
    loss = MatryoshkaLoss(Loss(ClipLoss(), name="ClipLoss", kind="pairs"), (16, 4))
    assert loss.uses_logit_scale
    loss(left, right, logit_scale=scale).backward()
    assert (left.grad.abs().sum(dim=0) > 0).all()
    assert scale.grad is not None and scale.grad != 0
    # the first 4 dims get the gradient of both terms: it differs from the full-dim loss alone
    alone = left.detach().clone().requires_grad_(True)
    ClipLoss()(alone, right, scale.detach()).backward()
    assert not torch.allclose(left.grad[:, :4], alone.grad[:, :4])
    torch.testing.assert_close(left.grad[:, 4:], alone.grad[:, 4:])


def test_bf16_embeddings_give_an_fp32_loss() -> None:
    left, right = sides()
    value = MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS)(left.bfloat16(), right.bfloat16())
    assert value.dtype == torch.float32


def test_weights_and_inner_loss_are_checked() -> None:
    with pytest.raises(ValueError, match="matryoshka_weights must be 3 non-negative numbers"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, (1.0, 1.0))
    with pytest.raises(ValueError, match="matryoshka_weights"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, (1.0, -1.0, 1.0))
    with pytest.raises(TypeError, match="MatryoshkaLoss wraps a finetuner Loss"):
        MatryoshkaLoss(torch.nn.Linear(2, 2), DIMS)


# --- fit(matryoshka_dims=), encode/evaluate(truncate_dim=), the artifact -------------------------------------------


def test_fit_trains_matryoshka_dims_keeps_them_and_encode_truncates(tmp_path) -> None:
    data = topic_pairs(48)
    model = finetuner.fit(
        "dummy-text", data, data[:16], matryoshka_dims=(16, 8, 4), batch_size=8, output_dir=tmp_path, verbose=False
    )
    assert model.matryoshka_dims == (16, 8, 4)
    record = finetuner.load(tmp_path / "model")
    assert record.matryoshka_dims == (16, 8, 4)
    texts = [q for q, _ in data[:5]]
    full = finetuner.encode(record, texts)
    cut = finetuner.encode(record, texts, truncate_dim=4)
    assert cut.shape == (5, 4)
    np.testing.assert_allclose(cut, truncate(full, 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1, rtol=1e-5)
    at_4 = finetuner.evaluate(record, data[:16], metrics=["recall@5"], truncate_dim=4)
    assert set(at_4) == {"recall@5"} and 0 <= at_4["recall@5"] <= 1


def test_loss_mapping_names_matryoshka_and_its_options() -> None:
    loss = {"name": "MatryoshkaLoss", "loss": "mnrl", "matryoshka_dims": [16, 8], "scale": 10}
    model = finetuner.fit("dummy-text", topic_pairs(16), loss=loss, batch_size=8, output_dir=None, verbose=False)
    assert model.matryoshka_dims == (16, 8)


def test_matryoshka_dims_on_a_matryoshka_loss_is_refused() -> None:
    with pytest.raises(OptionError, match="loss= is one already"):
        finetuner.fit(
            "dummy-text",
            topic_pairs(16),
            loss="MatryoshkaLoss",
            loss_options={"matryoshka_dims": [16, 8]},
            matryoshka_dims=(16, 8),
            batch_size=8,
            output_dir=None,
            verbose=False,
        )


def test_matryoshka_dims_option_reads_lists_and_comma_strings() -> None:
    assert FitOptions(matryoshka_dims="384,256, 64").matryoshka_dims == (384, 256, 64)  # YAML
    assert FitOptions(matryoshka_dims=["384,256", "64"]).matryoshka_dims == (384, 256, 64)  # the flag's nargs
    assert FitOptions(matryoshka_dims=[384, 64]).matryoshka_dims == (384, 64)
    with pytest.raises(OptionError, match="matryoshka_dims must be strictly descending"):
        FitOptions(matryoshka_dims=(64, 384))


def test_an_artifact_with_bad_matryoshka_dims_is_refused(tmp_path) -> None:
    model = finetuner.build_model("dummy-text", pretrained=False)
    model.matryoshka_dims = (16, 8)
    finetuner.save(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "finetuner.json").read_text())
    assert config["matryoshka_dims"] == [16, 8]
    config["matryoshka_dims"] = [32, 8]
    (tmp_path / "m" / "finetuner.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="matryoshka_dims=32 is larger than the output dimension 16"):
        finetuner.load(tmp_path / "m")
