"""GradCache (:func:`cached_backward`) gives the uncached loss's gradients: one and two towers, dropout, DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import finetuner
from finetuner.losses import build_loss
from finetuner.losses.cached import (
    CachedClipLoss,
    CachedMultipleNegativesRankingLoss,
    RandomState,
    cached_backward,
    mini_batches,
)
from finetuner_dummy.towers import TrigramTower
from tests.core.helpers import pairs
from tests.ddp import spawn

CPU = torch.device("cpu")
BATCH, MINI = 12, 5  # mini-batches of 5, 5 and 2


class DropoutTower(TrigramTower):
    """The dummy text tower with dropout, so each forward draws random masks."""

    def __init__(self) -> None:
        super().__init__(16)
        self.dropout = nn.Dropout(0.3)

    def forward(self, features):
        return self.dropout(super().forward(features))


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8) for _ in range(n)]


def one_tower(seed: int = 0) -> finetuner.EmbeddingModel:
    torch.manual_seed(seed)
    return finetuner.build_model("dummy-text", output_dim=8)


def two_towers(seed: int = 0) -> finetuner.EmbeddingModel:
    torch.manual_seed(seed)
    return finetuner.build_model("dummy-text+dummy-image", output_dim=8)


def sides_of(model: finetuner.EmbeddingModel, rows: slice = slice(None), negatives: bool = False) -> list[tuple[list, str]]:
    """(items, modality) per side of a batch: text pairs for one tower, captions and images for two; with
    ``negatives``, a third side of one hard negative per pair (a text, or an image)."""
    if len(model.towers) == 1:
        queries, documents = zip(*pairs(BATCH), strict=True)
        sides = [(list(queries), "text"), (list(documents), "text")]
        sides += [([d for _, d in pairs(BATCH, seed=1)], "text")] if negatives else []
    else:
        sides = [([f"caption {i}" for i in range(BATCH)], "text"), (images(BATCH), "image")]
        sides += [(images(BATCH, seed=1), "image")] if negatives else []
    return [(items[rows], modality) for items, modality in sides]


def embed_all(model, sides) -> list[torch.Tensor]:
    dtype = next(model.parameters()).dtype
    embeddings = []
    for items, modality in sides:
        features = model.tower(modality).preprocess(items)
        features = {k: v.to(dtype) if v.is_floating_point() else v for k, v in features.items()}
        embeddings.append(model(features, modality))
    return embeddings


def make_loss(model):
    if len(model.towers) == 1:
        loss = build_loss("mnrl", kind="pairs", task=model.task, embedding_size=8, symmetric=True)
    else:
        loss = build_loss("clip", kind="pairs", task=model.task, embedding_size=8)
    return lambda sides: loss(sides[0], sides[1], logit_scale=model.logit_scale, negatives=sides[2] if len(sides) > 2 else None)


def uncached(model, sides, mini: int | None = None) -> torch.Tensor:
    """The plain step, with the towers run on mini-batches of ``mini`` rows (all at once when None)."""
    parts = mini_batches(len(sides[0][0]), mini or len(sides[0][0]))
    outputs = [embed_all(model, [(items[part], modality) for items, modality in sides]) for part in parts]
    value = make_loss(model)([torch.cat(side) for side in zip(*outputs, strict=True)])
    value.backward()
    return value.detach()


def cached(model, sides, mini: int = MINI) -> torch.Tensor:
    parts = mini_batches(len(sides[0][0]), mini)

    def embed(chunk: int, sync: bool) -> list[torch.Tensor]:
        return embed_all(model, [(items[parts[chunk]], modality) for items, modality in sides])

    return cached_backward(embed, len(parts), make_loss(model), device=CPU)


def grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert set(actual) == set(expected) and expected
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, atol=atol, rtol=0, msg=f"gradient of {name}")


@pytest.mark.parametrize("build", [one_tower, two_towers], ids=["one-tower", "two-towers"])
@pytest.mark.parametrize("mini", [MINI, 1, BATCH])
def test_cached_gradients_equal_the_uncached_ones(build, mini):
    """fp32, the towers of the plain step run on the same mini-batches (a CNN's fp32 sums then add up alike)."""
    reference, model = build(), build()
    expected_loss = uncached(reference, sides_of(reference), mini)
    loss = cached(model, sides_of(model), mini)
    torch.testing.assert_close(loss, expected_loss, atol=1e-6, rtol=0)
    assert_same_grads(grads(model), grads(reference))
    if model.logit_scale is not None:
        assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0


@pytest.mark.parametrize("build", [one_tower, two_towers], ids=["one-tower", "two-towers"])
def test_cached_gradients_with_hard_negatives_equal_the_uncached_ones(build):
    reference, model = build(), build()
    uncached(reference, sides_of(reference, negatives=True), MINI)
    cached(model, sides_of(model, negatives=True))
    assert_same_grads(grads(model), grads(reference))


@pytest.mark.parametrize("build", [one_tower, two_towers], ids=["one-tower", "two-towers"])
def test_cached_gradients_equal_the_full_batch_step_in_fp64(build):
    """Against the plain step over the whole batch at once; fp64 towers, so batching changes no sum's rounding."""
    reference, model = build().double(), build().double()
    uncached(reference, sides_of(reference))
    cached(model, sides_of(model))
    assert_same_grads(grads(model), grads(reference), atol=1e-10)


def test_the_random_state_is_replayed_so_dropout_masks_match():
    """With dropout, the gradients are those of the loss over the embeddings the first pass made."""

    def build():
        torch.manual_seed(0)
        return finetuner.EmbeddingModel({"text": DropoutTower()}, output_dim=8)

    sides = sides_of(build())
    reference, model = build(), build()
    torch.manual_seed(1)
    uncached(reference, sides, MINI)
    after_reference = torch.get_rng_state()

    torch.manual_seed(1)
    cached(model, sides)
    assert torch.equal(torch.get_rng_state(), after_reference)  # the replays leave the random stream where one pass would
    assert_same_grads(grads(model), grads(reference))


def test_the_re_forward_replays_a_bert_encoders_dropout_bit_for_bit():
    """The correctness condition: each mini-batch's re-forward gives exactly the embeddings of its first pass.

    A BERT encoder in train mode, with hidden and attention dropout. (A plain step over the whole
    batch draws other masks than GradCache's mini-batches: the two runs differ after dropout, not
    through GradCache; with dropout off a fit matches the plain one, ``test_negatives``.)
    """
    transformers = pytest.importorskip("transformers", reason="transformers (the text plugin's) is not installed")
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.3,
        attention_probs_dropout_prob=0.3,
    )
    torch.manual_seed(0)
    bert = transformers.BertModel(config, add_pooling_layer=False).train()
    ids = torch.randint(5, 64, (BATCH, 2, 10))  # a query and a document per pair
    parts = mini_batches(BATCH, MINI)
    outputs: list[list[torch.Tensor]] = []

    def embed(chunk: int, sync: bool) -> list[torch.Tensor]:
        out = [bert(input_ids=ids[parts[chunk], side]).last_hidden_state[:, 0] for side in range(2)]
        outputs.append([o.detach().clone() for o in out])
        return out

    loss = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=32)
    cached_backward(embed, len(parts), lambda sides: loss(sides[0], sides[1]), device=CPU)
    first, again = outputs[: len(parts)], outputs[len(parts) :]
    assert len(again) == len(parts)
    for before, after in zip(first, again, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    redrawn = embed(0, False)[0].detach()  # without the replay the masks differ: the check above can fail
    assert (redrawn - first[0][0]).abs().max() > 1e-3


def test_random_state_replay_restores_the_outside_state():
    state = RandomState(CPU)
    first = torch.rand(3)
    with state.replay():
        assert torch.equal(torch.rand(3), first)
    assert not torch.equal(torch.rand(3), first)


def test_mini_batches_cover_the_batch():
    assert mini_batches(12, 5) == [slice(0, 5), slice(5, 10), slice(10, 12)]
    assert mini_batches(4, 8) == [slice(0, 4)]
    with pytest.raises(ValueError, match="mini_batch_size"):
        mini_batches(4, 0)


def test_cached_losses_compute_the_plain_loss_and_check_mini_batch_size():
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    plain = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=4)
    assert CachedMultipleNegativesRankingLoss(mini_batch_size=2)(left, right) == plain(left, right)
    assert CachedClipLoss(mini_batch_size=2)(left, right, torch.tensor(2.0)).isfinite()
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="mini_batch_size"):
            CachedMultipleNegativesRankingLoss(mini_batch_size=bad)


# -- DDP -------------------------------------------------------------------------------------------
WORLD = 2
CASES = [(one_tower, False), (two_towers, False), (one_tower, True), (two_towers, True)]  # (model, hard negatives)


def _ddp_worker(rank: int, out_dir: str) -> None:
    """Each rank holds half the batch; its model is DDP-wrapped (the temperature averaged by hand)."""
    results = {}
    for build, negatives in CASES:
        model = build()
        step = _Embed(model)
        if model.logit_scale is not None:  # used by the loss, outside DDP's forward: averaged by hand
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step, ["model.logit_scale"])
        net = nn.parallel.DistributedDataParallel(step)
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        sides = sides_of(model, rows, negatives)
        parts = mini_batches(len(sides[0][0]), 3)

        def embed(chunk: int, sync: bool, sides=sides, parts=parts, net=net) -> list[torch.Tensor]:
            module = net if sync else net.module
            return module([(items[parts[chunk]], modality) for items, modality in sides])

        cached_backward(embed, len(parts), make_loss(model), device=CPU)
        if model.logit_scale is not None:
            torch.distributed.all_reduce(model.logit_scale.grad)
            model.logit_scale.grad /= WORLD
        results[build.__name__, negatives] = grads(model)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


class _Embed(nn.Module):
    """One forward over every side, as the trainer's step module does."""

    def __init__(self, model: finetuner.EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, sides):
        return embed_all(self.model, sides)


def test_cached_gradients_under_ddp_equal_the_single_process_ones(tmp_path):
    spawn(_ddp_worker, WORLD, tmp_path, str(tmp_path), timeout=300)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for build, negatives in CASES:
        reference = build()
        uncached(reference, sides_of(reference, negatives=negatives), 3)  # the towers on the mini-batches the ranks run
        for result in ranks:
            assert_same_grads(result[build.__name__, negatives], grads(reference))
