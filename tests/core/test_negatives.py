"""Hard negatives end to end: reading them, the losses that use them, batches, fit (GradCache too), evaluate, the CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import finetuner
from finetuner.cli import main
from finetuner.data.samplers import NoDuplicatesBatchSampler
from finetuner.errors import DataError, OptionError, TrainingError
from finetuner.losses import build_loss
from finetuner.training.callbacks import Callback
from tests.core.helpers import coloured_images, pairs


def write_csv(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def with_negatives(n: int = 48, k: int = 2) -> list[tuple[str, ...]]:
    """(query, document, k negatives): each negative a document of another topic, from outside the pairs."""
    others = [d for _, d in pairs(8 * k, seed=1)]
    return [(q, d, *(others[(i % 8 + 1 + j) % 8 + 8 * j] for j in range(k))) for i, (q, d) in enumerate(pairs(n))]


# -- reading --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header", [("query", "document", "negative", "negative_2"), ("anchor", "positive", "negative", "hard_negative_2")]
)
def test_csv_negative_columns_are_read(tmp_path, header):
    path = write_csv(tmp_path / "train.csv", [header, ("q1", "d1", "n1", "m1"), ("q2", "d2", "n2", "m2")])
    data = finetuner.load_data(path)
    assert data.queries == ["q1", "q2"] and data.documents == ["d1", "d2"]
    assert data.negatives == [["n1", "m1"], ["n2", "m2"]] and data.num_negatives == 2


def test_tuples_dataframes_and_dicts_carry_negatives():
    assert finetuner.load_data([("q1", "d1", "n1"), ("q2", "d2", "n2")]).negatives == [["n1"], ["n2"]]
    frame = pd.DataFrame({"query": ["q1", "q2"], "document": ["d1", "d2"], "negative": ["n1", "n2"]})
    assert finetuner.load_data(frame).negatives == [["n1"], ["n2"]]
    columns = {"q": ["q1", "q2"], "d": ["d1", "d2"], "x": ["n1", "n2"], "y": ["m1", "m2"]}
    chosen = finetuner.load_data(columns, columns={"query": "q", "document": "d", "negative": ["x", "y"]})
    assert chosen.negatives == [["n1", "m1"], ["n2", "m2"]]
    assert finetuner.load_data([("q1", "d1"), ("q2", "d2")]).negatives is None


def test_an_empty_negative_cell_names_file_line_and_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", [("query", "document", "negative"), ("q1", "d1", "n1"), ("q2", "d2", " ")])
    with pytest.raises(DataError, match=r"train\.csv, line 3: empty 'negative' value \('negative'\)"):
        finetuner.load_data(path)


def test_text_to_image_pairs_take_negative_images(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / name)
    path = write_csv(tmp_path / "t2i.csv", [("text", "image", "negative"), ("red", "a.png", "b.png"), ("blue", "b.png", "c.png")])
    data = finetuner.load_data(path)
    assert data.negatives == [[tmp_path / "b.png"], [tmp_path / "c.png"]]


# -- losses ---------------------------------------------------------------------------------------
def embeddings(rows: int, k: int, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, dim, generator=g) for n in (rows, rows, rows * k))


def test_mnrl_scores_each_query_against_every_document_and_negative():
    queries, documents, negatives = embeddings(4, 2)
    loss = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=6, scale=10.0)
    candidates = F.normalize(torch.cat([documents, negatives]), dim=-1)
    expected = F.cross_entropy(10.0 * F.normalize(queries, dim=-1) @ candidates.T, torch.arange(4))
    torch.testing.assert_close(loss(queries, documents, negatives=negatives), expected)
    assert loss(queries, documents, negatives=negatives) > loss(queries, documents)  # more negatives, more to rank above


def test_clip_adds_negative_images_to_the_text_to_image_direction():
    texts, images, negatives = embeddings(4, 1)
    loss = build_loss("clip", kind="pairs", task="text-to-image", embedding_size=6)
    scale = torch.tensor(math.log(10.0))
    t, i = F.normalize(texts, dim=-1), F.normalize(images, dim=-1)
    candidates = torch.cat([i, F.normalize(negatives, dim=-1)])
    targets = torch.arange(4)
    expected = (F.cross_entropy(10 * t @ candidates.T, targets) + F.cross_entropy(10 * i @ t.T, targets)) / 2
    torch.testing.assert_close(loss(texts, images, logit_scale=scale, negatives=negatives), expected)


def test_a_loss_that_cannot_use_negatives_says_which_can():
    queries, documents, negatives = embeddings(4, 1)
    siglip = build_loss("siglip", kind="pairs", task="text-to-image", embedding_size=6)
    with pytest.raises(ValueError, match="SigLIPLoss cannot use; losses that use them: MultipleNegativesRankingLoss, ClipLoss"):
        siglip(queries, documents, negatives=negatives)
    with pytest.raises(ValueError, match="must be \\[N \\* k, 6\\] for 4 pairs"):
        build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=6)(queries, documents, negatives=negatives[:3])


def test_matryoshka_passes_negatives_to_the_loss_inside():
    queries, documents, negatives = embeddings(4, 1)
    loss = build_loss("MatryoshkaLoss", kind="pairs", task="text-to-text", embedding_size=6, loss="mnrl", matryoshka_dims=(6, 3))
    inner = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=6)
    expected = inner(queries, documents, negatives=negatives) + inner(
        queries[:, :3], documents[:, :3], negatives=negatives[:, :3]
    )
    torch.testing.assert_close(loss(queries, documents, negatives=negatives), expected)


def test_groups_keep_a_querys_other_documents_out_of_its_negatives():
    queries, documents, negatives = embeddings(4, 1)
    groups = torch.tensor([0, 1, 0, 2])  # pairs 0 and 2 share their query
    loss = build_loss("mnrl", kind="pairs", task="text-to-text", embedding_size=6, scale=10.0, symmetric=True)
    q, d, n = (F.normalize(t, dim=-1) for t in (queries, documents, negatives))
    forward, backward = 10.0 * q @ torch.cat([d, n]).T, 10.0 * d @ q.T
    for logits in (forward, backward):
        logits[0, 2] = logits[2, 0] = -torch.inf
    targets = torch.arange(4)
    expected = (F.cross_entropy(forward, targets) + F.cross_entropy(backward, targets)) / 2
    torch.testing.assert_close(loss(queries, documents, negatives=negatives, groups=groups), expected)


# -- batches --------------------------------------------------------------------------------------
def test_negatives_may_repeat_in_a_batch_but_never_be_another_pairs_document():
    keys = [("q0", "d0"), ("q1", "d1"), ("q2", "d2"), ("q3", "d3")]
    negatives = [("shared",), ("shared",), ("d0",), ("shared",)]  # pair 2's negative is pair 0's document
    sampler = NoDuplicatesBatchSampler(keys, 2, seed=0, negatives=negatives)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert not {0, 2} <= set(batch)
    assert len(NoDuplicatesBatchSampler(keys[:2] + keys[3:], 3, negatives=negatives[:2] + negatives[3:])) == 1


def test_a_querys_pairs_share_batches_when_the_loss_takes_groups():
    from finetuner.training.batches import Side, make_sampler

    multi = [(q, f"{d} {n}") for q, d in pairs(12) for n in range(4)]  # 12 queries with 4 documents each
    data = finetuner.load_data(multi)
    sides = [Side(data.queries, "text"), Side(data.documents, "text")]
    options = {"batch_size": 24, "samples_per_class": 2, "seed": 0}
    repeating = make_sampler(data, sides, repeat_queries=True, **options)
    assert len(repeating) == 2 and any(len({data.queries[i] for i in batch}) < 24 for batch in repeating)
    with pytest.raises(DataError, match="no batch of 24 pairs"):
        make_sampler(data, sides, **options)  # without groups a batch holds 12 distinct queries at most
    model = fit(multi, batch_size=24, mini_batch_size=8)
    assert len([h for h in model.history if "loss" in h]) == 2


# -- fit ------------------------------------------------------------------------------------------
def fit(data, **options):
    defaults = {"epochs": 1, "batch_size": 8, "output_dir": None, "verbose": False, "seed": 0}
    return finetuner.fit(options.pop("model", "dummy-text"), data, **{**defaults, **options})


def test_fit_trains_on_negatives_and_refuses_a_loss_that_ignores_them():
    model = fit(with_negatives(), epochs=2, learning_rate=5e-2)
    losses = [h["loss"] for h in model.history if "loss" in h]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])

    class PlainLoss(nn.Module):
        kinds = ("pairs",)

        def forward(self, queries, documents):
            return (queries - documents).pow(2).sum()

    with pytest.raises(OptionError, match="PlainLoss cannot use; losses that use them: MultipleNegativesRankingLoss"):
        fit(with_negatives(), loss=PlainLoss())


def test_evaluate_ranks_against_the_documents_and_the_negatives():
    base = pairs(16)
    model = finetuner.build_model("dummy-text")
    plain = finetuner.evaluate(model, base, metrics=["recall@16"], precision="fp32")
    # each query's own text as its negative ranks first (cosine 1), above the query's document
    harder = finetuner.evaluate(model, [(q, d, q) for q, d in base], metrics=["recall@1", "mrr@32"], precision="fp32")
    assert plain["recall@16"] == 1.0  # 16 documents: all of them
    assert harder["recall@1"] == 0.0 and harder["mrr@32"] <= 0.5


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("negatives", [0, 2])
def test_a_gradcache_step_matches_the_plain_step(negatives):
    """One SGD step: the same weights with and without mini-batches (fp32), hard negatives or not."""
    data = with_negatives(16, negatives) if negatives else pairs(16)
    options = {"batch_size": 16, "optimizer": "SGD", "learning_rate": 0.5, "precision": "fp32", "max_grad_norm": None}
    plain = fit(data, **options)
    cached = fit(data, mini_batch_size=5, **options)
    named = fit(data, loss="CachedMultipleNegativesRankingLoss", loss_options={"mini_batch_size": 5}, **options)
    start = weights(finetuner.build_model("dummy-text"))
    expected = weights(plain)
    assert any(not torch.equal(expected[k], start[k]) for k in expected)  # the step moved the weights
    for other in (cached, named):
        for name, value in weights(other).items():
            torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)


def test_a_gradcache_step_matches_the_plain_step_for_two_towers():
    images, labels = coloured_images(4)
    data = [(f"a {label} square {i}", image) for i, (image, label) in enumerate(zip(images, labels, strict=True))]
    options = {"batch_size": 16, "optimizer": "SGD", "learning_rate": 0.1, "precision": "fp32", "max_grad_norm": None}
    runs = []
    for extra in ({}, {"mini_batch_size": 4}):
        torch.manual_seed(0)
        runs.append(weights(fit(data, model=finetuner.build_model("dummy-text+dummy-image", output_dim=8), **options, **extra)))
    for name, value in runs[1].items():
        torch.testing.assert_close(value, runs[0][name], atol=1e-5, rtol=0, msg=name)


def test_mini_batch_size_larger_than_the_batch_is_refused():
    with pytest.raises(TrainingError, match="mini_batch_size 16 is larger than batch_size 8"):
        fit(pairs(32), mini_batch_size=16)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        state.stop = state.step == self.step


def test_gradcache_training_resumes_mid_epoch(tmp_path):
    data = with_negatives(48, 1)
    options = {"epochs": 2, "batch_size": 12, "mini_batch_size": 5, "learning_rate": 5e-2, "checkpoint_every_steps": 1}
    whole = fit(data, output_dir=tmp_path / "whole", **options)
    fit(data, output_dir=tmp_path / "resumed", callbacks=[StopAt(2)], **options)  # stops inside the first epoch
    resumed = fit(data, output_dir=tmp_path / "resumed", resume=True, overwrite=True, **options)
    assert [h["step"] for h in resumed.history if "loss" in h] == [h["step"] for h in whole.history if "loss" in h]
    for name, value in weights(resumed).items():
        torch.testing.assert_close(value, weights(whole)[name], atol=1e-6, rtol=0)


# -- the command line -----------------------------------------------------------------------------
def test_mine_then_fit_from_the_cli(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("query", "document"), *pairs(48)])
    mined = tmp_path / "mined.csv"
    assert main(["mine", "dummy-text", str(train), "-o", str(mined), "--num-negatives", "2"]) == 0
    assert next(csv.reader(mined.open())) == ["query", "document", "negative", "negative_2"]
    argv = ["fit", "--model", "dummy-text", "--train-data", str(mined), "--epochs", "1", "--batch-size", "12"]
    argv += ["--mini-batch-size", "4", "--quiet"]
    assert main([*argv, "--output-dir", str(tmp_path / "run")]) == 0
    assert finetuner.load(tmp_path / "run" / "model").output_dim == 16


def test_fit_help_lists_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--mini-batch-size" in out and "--gradient-checkpointing" in out
