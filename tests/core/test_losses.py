"""In-batch, CLIP and scored losses against hand-written references; the uniform Loss interface; lookup by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from finetuner import UnknownNameError
from finetuner.losses import (
    ClipLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    Loss,
    MultipleNegativesRankingLoss,
    build_loss,
    default_loss,
    loss_names,
)


def cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def ref_cross_entropy(rows: list[list[float]]) -> float:
    """Mean over rows of -log softmax(row)[i] for row i."""
    return sum(math.log(sum(math.exp(x) for x in row)) - row[i] for i, row in enumerate(rows)) / len(rows)


def ref_mnrl(q: torch.Tensor, d: torch.Tensor, scale: float) -> float:
    ql, dl = q.tolist(), d.tolist()
    return ref_cross_entropy([[scale * cos(a, b) for b in dl] for a in ql])


def ref_cosent(a: torch.Tensor, b: torch.Tensor, scores: list[float], scale: float) -> float:
    c = [cos(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    n = len(c)
    return math.log(1 + sum(math.exp(scale * (c[j] - c[i])) for i in range(n) for j in range(n) if scores[i] > scores[j]))


@pytest.fixture
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)


# --- MultipleNegativesRankingLoss ---------------------------------------------------------------


def test_mnrl_on_orthonormal_pairs_has_the_closed_form_value():
    eye = torch.eye(2)
    # each row: cosines (1, 0) -> -log(e / (e + 1)) = log(1 + 1/e)
    assert MultipleNegativesRankingLoss(scale=1.0)(eye, eye).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_mnrl_matches_a_hand_written_reference(pairs):
    q, d = pairs
    for scale in (1.0, 20.0):
        assert MultipleNegativesRankingLoss(scale=scale)(q, d).item() == pytest.approx(ref_mnrl(q, d, scale), rel=1e-5)


def test_mnrl_uses_cosines_so_the_scale_of_the_embeddings_does_not_matter(pairs):
    q, d = pairs
    loss = MultipleNegativesRankingLoss()
    assert loss(3 * q, 0.5 * d).item() == pytest.approx(loss(q, d).item(), rel=1e-5)


def test_symmetric_mnrl_averages_both_directions(pairs):
    q, d = pairs
    symmetric = MultipleNegativesRankingLoss(scale=5.0, symmetric=True)(q, d).item()
    expected = (ref_mnrl(q, d, 5.0) + ref_mnrl(d, q, 5.0)) / 2
    assert symmetric == pytest.approx(expected, rel=1e-5)
    assert abs(ref_mnrl(q, d, 5.0) - ref_mnrl(d, q, 5.0)) > 1e-3  # the two directions differ here


@pytest.mark.parametrize("loss", [MultipleNegativesRankingLoss(), MultipleNegativesRankingLoss(symmetric=True)])
def test_mnrl_gradients_flow_and_training_pulls_positives_together(pairs, loss):
    q, d = (t.clone().requires_grad_() for t in pairs)
    optimizer = torch.optim.SGD([q, d], lr=0.5)
    first = None
    for _ in range(20):
        optimizer.zero_grad()
        value = loss(q, d)
        value.backward()
        assert q.grad.abs().sum() > 0 and d.grad.abs().sum() > 0
        first = value.item() if first is None else first
        optimizer.step()
    assert loss(q, d).item() < first / 2
    positives = torch.nn.functional.cosine_similarity(q, d).mean().item()
    assert positives > torch.nn.functional.cosine_similarity(*pairs).mean().item()


def test_pair_losses_reject_mismatched_shapes(pairs):
    q, d = pairs
    with pytest.raises(ValueError, match="same shape"):
        MultipleNegativesRankingLoss()(q, d[:3])


# --- ClipLoss ------------------------------------------------------------------------------------


def test_clip_loss_matches_a_hand_written_reference(pairs):
    t, i = pairs
    value = ClipLoss()(t, i, torch.tensor(math.log(2.0))).item()
    expected = (ref_mnrl(t, i, 2.0) + ref_mnrl(i, t, 2.0)) / 2
    assert value == pytest.approx(expected, rel=1e-5)


def test_clip_temperature_gets_a_gradient_and_is_clamped_at_100(pairs):
    t, i = pairs
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    ClipLoss()(t, i, logit_scale).backward()
    assert logit_scale.grad is not None and logit_scale.grad.item() != 0
    high = nn.Parameter(torch.tensor(math.log(1000.0)))
    value = ClipLoss()(t, i, high)
    value.backward()
    assert value.item() == pytest.approx(ClipLoss()(t, i, torch.tensor(math.log(100.0))).item(), rel=1e-6)
    assert high.grad.item() == 0


# --- scored --------------------------------------------------------------------------------------


def test_cosent_matches_a_hand_written_reference(pairs):
    a, b = pairs
    scores = [4.5, 0.0, 2.0, 2.0, 5.0]
    value = CoSENTLoss(scale=3.0)(a, b, torch.tensor(scores)).item()
    assert value == pytest.approx(ref_cosent(a, b, scores, 3.0), rel=1e-5)


def test_cosent_uses_only_the_order_of_the_scores(pairs):
    a, b = pairs
    scores = torch.tensor([4.5, 0.0, 2.0, 2.5, 5.0])
    loss = CoSENTLoss()
    base = loss(a, b, scores).item()
    assert loss(a, b, scores * 10 - 7).item() == pytest.approx(base, rel=1e-6)
    assert loss(a, b, scores.exp()).item() == pytest.approx(base, rel=1e-6)


def test_cosent_is_lower_when_cosines_follow_the_scores():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.1], [1.0, 1.0], [0.0, 1.0]])  # cosines decrease along the rows
    agree, disagree = torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 3.0])
    loss = CoSENTLoss()
    assert loss(a, b, agree).item() < 0.01 < 5 < loss(a, b, disagree).item()
    assert loss(a, b, torch.ones(3)).item() == pytest.approx(0.0, abs=1e-7)  # ties: no ordered pair


def test_cosine_similarity_loss_maps_scores_from_their_range(pairs):
    a, b = pairs
    scores = [4.5, 0.0, 2.0, 2.5, 5.0]
    expected = sum((cos(x, y) - s / 5) ** 2 for x, y, s in zip(a.tolist(), b.tolist(), scores, strict=True)) / len(scores)
    assert CosineSimilarityLoss(score_range=(0, 5))(a, b, torch.tensor(scores)).item() == pytest.approx(expected, rel=1e-5)
    in_unit = torch.tensor(scores) / 5
    assert CosineSimilarityLoss()(a, b, in_unit).item() == pytest.approx(expected, rel=1e-5)


def test_cosine_similarity_loss_rejects_scores_outside_the_range(pairs):
    a, b = pairs
    with pytest.raises(ValueError, match=r"score_range"):
        CosineSimilarityLoss()(a, b, torch.tensor([4.5, 0.0, 2.0, 2.5, 5.0]))
    with pytest.raises(ValueError, match=r"\(0.0, 1.0\)"):
        CosineSimilarityLoss(score_range=(0, 1))(a, b, torch.tensor([0.5, 0.0, 2.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="max > min"):
        CosineSimilarityLoss(score_range=(5, 0))


@pytest.mark.parametrize("loss", [CoSENTLoss(), CosineSimilarityLoss(score_range=(0, 5))])
def test_scored_losses_pass_gradients(pairs, loss):
    a, b = (t.clone().requires_grad_() for t in pairs)
    loss(a, b, torch.tensor([4.5, 0.0, 2.0, 2.5, 5.0])).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# --- fp32 ----------------------------------------------------------------------------------------


def test_losses_compute_in_fp32_even_under_bf16_autocast(pairs):
    q, d = (t.bfloat16() for t in pairs)
    loss = MultipleNegativesRankingLoss()
    reference = loss(q.float(), d.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(q, d)
    assert value.dtype == torch.float32
    assert value.item() == reference.item()


# --- the uniform Loss interface ------------------------------------------------------------------


def build(name, kind="pairs", task="text-to-text", **kwargs) -> Loss:
    return build_loss(name, kind=kind, task=task, embedding_size=4, **kwargs)


def test_loss_wrapper_calls_each_kind_the_same_way(pairs):
    q, d = pairs
    scale = torch.tensor(math.log(2.0))
    assert build("mnrl").compute(q, d, logit_scale=None).item() == pytest.approx(ref_mnrl(q, d, 20.0), rel=1e-5)
    assert build("mnrl", scale=2.0)(q, d, logit_scale=scale).item() == pytest.approx(ref_mnrl(q, d, 2.0), rel=1e-5)  # ignored
    clip = build("clip", task="text-to-image")
    assert clip(q, d, logit_scale=scale).item() == pytest.approx(ClipLoss()(q, d, scale).item())
    scores = torch.tensor([4.5, 0.0, 2.0, 2.5, 5.0])
    assert build("cosent", kind="scored")(q, d, scores=scores).item() == pytest.approx(CoSENTLoss()(q, d, scores).item())
    cosine = build("cosine", kind="scored", score_range=(0, 5))
    assert cosine(q, d, scores=scores.tolist()).item() == pytest.approx(CosineSimilarityLoss((0, 5))(q, d, scores).item())


def test_loss_wrapper_says_what_a_call_is_missing(pairs):
    q, d = pairs
    with pytest.raises(ValueError, match="right="):
        build("mnrl")(q)
    with pytest.raises(ValueError, match="same number of rows"):
        build("mnrl")(q, d[:2])
    with pytest.raises(ValueError, match="logit_scale="):
        build("clip", task="text-to-image")(q, d)
    with pytest.raises(ValueError, match="scores="):
        build("cosent", kind="scored")(q, d)
    with pytest.raises(ValueError, match="labels="):
        build("TripletMarginLoss", kind="labeled")(q)


def test_builtin_losses_have_no_parameters_of_their_own():
    for name, kind in [("mnrl", "pairs"), ("cosent", "scored"), ("TripletMarginLoss", "labeled")]:
        loss = build(name, kind=kind)
        assert not loss.needs_optimizer and not list(loss.parameters())
    assert not build("clip", task="text-to-image").needs_optimizer  # the temperature belongs to the model


# --- lookup by name and kind checks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("MultipleNegativesRankingLoss", "pairs", "MultipleNegativesRankingLoss"),
        ("multiplenegativesranking", "pairs", "MultipleNegativesRankingLoss"),
        ("mnrl", "pairs", "MultipleNegativesRankingLoss"),
        ("InfoNCE", "pairs", "MultipleNegativesRankingLoss"),
        ("in-batch", "pairs", "MultipleNegativesRankingLoss"),
        ("cosent", "scored", "CoSENTLoss"),
        ("COSENTLOSS", "scored", "CoSENTLoss"),
        ("cosine", "scored", "CosineSimilarityLoss"),
        ("tripletmargin", "labeled", "TripletMarginLoss"),
        ("triplet_margin_loss", "labeled", "TripletMarginLoss"),
        ("SupConLoss", "labeled", "SupConLoss"),
        ("ntxent", "labeled", "NTXentLoss"),
        ("multi-similarity", "labeled", "MultiSimilarityLoss"),
    ],
)
def test_names_are_case_insensitive_with_aliases_and_optional_suffix(name, kind, expected):
    assert build(name, kind=kind).name == expected


def test_clip_by_alias_and_options_reach_the_loss():
    assert isinstance(build("clip", task="text-to-image").module, ClipLoss)
    module = build("mnrl", scale=7.0, symmetric=True).module
    assert (module.scale, module.symmetric) == (7.0, True)


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError) as info:
        build("arcfase", kind="labeled")
    assert "ArcFaceLoss" in info.value.close_matches and "ArcFaceLoss" in str(info.value)
    with pytest.raises(UnknownNameError) as info:
        build("MultipleNegativesRanking_Los")
    assert info.value.close_matches[0] == "MultipleNegativesRankingLoss"
    with pytest.raises(UnknownNameError, match="TripletMarginLoss"):
        build("no-such-loss")


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("cosent", "pairs", r"CoSENTLoss needs scored pairs .* the data is pairs"),
        ("mnrl", "scored", r"needs pairs .* the data is scored"),
        ("mnrl", "labeled", r"needs pairs .* the data is labeled"),
        ("TripletMarginLoss", "pairs", r"needs labeled items but the data is pairs"),
        ("ArcFace", "scored", r"needs labeled items but the data is scored"),
    ],
)
def test_a_loss_that_does_not_fit_the_data_kind_is_refused(name, kind, message):
    with pytest.raises(ValueError, match=message):
        build(name, kind=kind, num_classes=3)


def test_clip_needs_a_two_tower_model_and_miners_need_labels():
    with pytest.raises(ValueError, match="text-to-image"):
        build("clip", task="text-to-text")
    with pytest.raises(ValueError, match="miner= applies to losses for labeled data"):
        build("mnrl", miner="BatchHardMiner")


def test_unknown_kind_or_task_is_refused():
    with pytest.raises(UnknownNameError, match="kind='pairs'"):
        build("mnrl", kind="retrieval")
    with pytest.raises(UnknownNameError, match="text-to-image"):
        build("mnrl", task="audio-to-text")


def test_default_losses():
    assert default_loss("pairs", "text-to-text") == "MultipleNegativesRankingLoss"
    assert default_loss("pairs", "image-to-image") == "MultipleNegativesRankingLoss"
    assert default_loss("pairs", "text-to-image") == "ClipLoss"
    assert default_loss("labeled", "image-to-image") == "TripletMarginLoss"
    assert default_loss("scored", "text-to-text") == "CoSENTLoss"
    assert build(None, kind="scored").name == "CoSENTLoss"
    assert build(None, task="text-to-image").name == "ClipLoss"


def test_loss_names_by_kind():
    assert loss_names("pairs") == [
        "MultipleNegativesRankingLoss",
        "ClipLoss",
        "CachedMultipleNegativesRankingLoss",
        "CachedClipLoss",
        "SigLIPLoss",
    ]
    assert loss_names("scored") == ["CoSENTLoss", "CosineSimilarityLoss"]
    labeled = loss_names("labeled")
    assert (
        {"TripletMarginLoss", "ArcFaceLoss", "SupConLoss"} <= set(labeled)
        and "VICRegLoss" not in labeled
        and "ManifoldLoss" not in labeled
    )


class Margin(nn.Module):
    """A user's own pair loss: 1 - mean cosine of the pairs."""

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return 1 - torch.nn.functional.cosine_similarity(left, right).mean()


def test_a_users_module_is_called_with_the_kinds_arguments(pairs):
    q, d = pairs
    loss = build(Margin())
    assert loss.name == "Margin" and loss.kind == "pairs"
    assert loss(q, d, logit_scale=torch.tensor(1.0)).item() == pytest.approx(Margin()(q, d).item())
    own = build(MultipleNegativesRankingLoss(scale=3.0))
    assert own(q, d).item() == pytest.approx(ref_mnrl(q, d, 3.0), rel=1e-5)
    assert build(own) is own
    with pytest.raises(ValueError, match="the data is scored"):
        build(own, kind="scored")
    with pytest.raises(ValueError, match="needs scored pairs"):
        build(CoSENTLoss())
    with pytest.raises(ValueError, match="loss options apply only"):
        build(Margin(), scale=2.0)
    with pytest.raises(TypeError, match="got int"):
        build(3)
