"""fit() end to end on the dummy plugin's tiny towers: every task, every data kind, the options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import finetuner
from finetuner.cli import main
from tests.core.helpers import coloured_images, quiet_fit, topic_pairs


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_text_pairs_train_and_improve(tmp_path):
    pairs = topic_pairs()
    model = quiet_fit("dummy-text", pairs[:90], pairs[90:], epochs=3, batch_size=16, learning_rate=5e-2, output_dir=tmp_path)
    losses = [h["loss"] for h in model.history if "loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert model.metrics["after"]["recall@5"] > model.metrics["before"]["recall@5"]
    saved = json.loads((tmp_path / "model" / "finetuner.json").read_text())
    assert saved["metrics"]["after"]["recall@5"] == pytest.approx(model.metrics["after"]["recall@5"])
    assert saved["training"]["loss"] == "MultipleNegativesRankingLoss" and saved["training"]["data_kind"] == "pairs"


def test_save_load_encode_round_trip(tmp_path):
    model = quiet_fit("dummy-text", topic_pairs(40), epochs=1, batch_size=8, output_dim=8, output_dir=tmp_path)
    texts = ["alpha question", "", "notes on ohce"]
    loaded = finetuner.load(tmp_path / "model")
    assert loaded.output_dim == 8
    np.testing.assert_array_equal(
        finetuner.encode(model, texts, precision="fp32"), finetuner.encode(tmp_path / "model", texts, precision="fp32")
    )


def test_labeled_images_with_miner():
    images, labels = coloured_images()
    model = quiet_fit(
        "dummy-image",
        list(zip(images, labels)),
        list(zip(images, labels)),
        kind="labeled",
        miner="MultiSimilarityMiner",
        epochs=2,
        batch_size=16,
        learning_rate=1e-2,
    )
    assert model.metrics["after"]["map@r"] >= model.metrics["before"]["map@r"] - 0.05
    assert {"r_precision", "precision@1"} <= set(model.metrics["after"])


def test_arcface_gets_its_own_optimizer():
    images, labels = coloured_images(6)
    model = quiet_fit(
        "dummy-image",
        list(zip(images, labels)),
        kind="labeled",
        loss="ArcFaceLoss",
        epochs=1,
        batch_size=8,
    )
    assert model.history


def test_text_to_image_two_towers(tmp_path):
    images, labels = coloured_images(8)
    captions = [f"a {label} square, picture {i}" for i, label in enumerate(labels)]
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=12)
    scale = model.logit_scale.item()
    tuned = quiet_fit(
        model,
        list(zip(captions, images)),
        list(zip(captions, images)),
        epochs=2,
        batch_size=8,
        learning_rate=1e-2,
        output_dir=tmp_path,
    )
    assert tuned.logit_scale.item() != scale  # the temperature is learned
    assert "t2i/recall@5" in tuned.metrics["after"] and "i2t/recall@5" in tuned.metrics["after"]
    loaded = finetuner.load(tmp_path / "model")
    np.testing.assert_allclose(finetuner.encode(loaded, images[:3]), finetuner.encode(tuned, images[:3]), atol=1e-6)
    assert finetuner.encode(loaded, ["a red square"]).shape == (1, 12)


def test_scored_pairs_default_to_cosent():
    rows = [(f"w{i} a", f"w{i} b", float(i % 5)) for i in range(40)]
    model = quiet_fit("dummy-text", rows, rows, epochs=1, batch_size=8)
    assert {"pearson", "spearman"} <= set(model.metrics["after"])


def test_frozen_backbone_stays_identical_and_uses_the_cache(tmp_path):
    model = finetuner.build_model("dummy-text", output_dim=8, freeze=True)
    backbone = {k: v.clone() for k, v in model.towers.state_dict().items()}
    head = weights(model.projections)
    quiet_fit(
        model,
        topic_pairs(48),
        epochs=2,
        batch_size=8,
        learning_rate=1e-2,
        cache_frozen="disk",
        output_dir=tmp_path,
    )
    assert all(torch.equal(v, model.towers.state_dict()[k]) for k, v in backbone.items())
    assert any(not torch.equal(v, model.projections.state_dict()[k]) for k, v in head.items())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["side-0.npy", "side-1.npy"]


def test_freezing_everything_without_a_head_is_refused():
    with pytest.raises(finetuner.TrainingError, match="nothing to train"):
        quiet_fit("dummy-text", topic_pairs(20), freeze=True, batch_size=4)


def test_same_seed_same_weights():
    runs = [quiet_fit("dummy-text", topic_pairs(40), epochs=1, batch_size=8, seed=7) for _ in range(2)]
    other = quiet_fit("dummy-text", topic_pairs(40), epochs=1, batch_size=8, seed=8)
    first, second, third = (weights(m) for m in (*runs, other))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], third[k]) for k in first)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
        ({"batch_size": 500}, "larger than the training data"),
        ({"optimizer": "adamm"}, "Did you mean: .*AdamW"),
        ({"scheduler": "cosin"}, "Did you mean: cosine"),
        ({"loss": "TripletMarginLos"}, "TripletMarginLoss"),
        ({"epoch": 2}, "unknown fit\\(\\) option 'epoch'"),
        ({"max_grad_norm": -1}, r"max_grad_norm must be non-negative in \[0, inf\), got -1"),
        ({"warmup_ratio": 5}, r"warmup_ratio must be a number in \[0, 1\], got 5"),
        ({"num_workers": -1}, r"num_workers must be a non-negative integer in \[0, inf\), got -1"),
        ({"eval_k": (0,)}, r"eval_k must be a list of positive integers in \[1, inf\), got \(0,\)"),
        ({"seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
        ({"learning_rate": "fast"}, r"learning_rate must be a number, got 'fast' \(a string that does not read as one\)"),
        ({"epochs": 2.5}, r"epochs must be an integer, got 2.5 \(float\)"),
        ({"compile": "maybe"}, r"compile must be True or False, got 'maybe'"),
        ({"cache_frozen": "ram"}, r"unknown cache_frozen 'ram'"),
    ],
)
def test_bad_options_fail_before_training(options, message):
    with pytest.raises(finetuner.FinetunerError, match=message):
        quiet_fit("dummy-text", topic_pairs(20), **{"batch_size": 4, **options})


def test_options_are_checked_before_the_data_is_read(tmp_path):
    with pytest.raises(finetuner.TrainingError, match="max_grad_norm"):
        quiet_fit("dummy-text", tmp_path / "missing.csv", max_grad_norm=-1)


def test_option_strings_become_numbers():
    """As PyYAML reads them: ``learning_rate: 1e-2`` is the string '1e-2'."""
    model = quiet_fit("dummy-text", topic_pairs(20), batch_size="4", learning_rate="1e-2", max_grad_norm="0")
    assert len([h for h in model.history if "loss" in h]) == 5


def test_non_finite_loss_names_the_step():
    with pytest.raises(finetuner.TrainingError, match=r"loss became (nan|inf) at step 1"):
        quiet_fit(
            "dummy-text",
            topic_pairs(20),
            batch_size=4,
            learning_rate=1e30,
            loss_options={"scale": float("inf")},
        )


def test_cli_fit_from_yaml_config(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("query,document\n" + "\n".join(f"{q},{d}" for q, d in topic_pairs(32)))
    config = tmp_path / "run.yaml"
    config.write_text(f"model: dummy-text\ntrain_data: {train}\nepochs: 1\nbatch_size: 8\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["fit", "--config", str(config), "--quiet", "--learning-rate", "0.01"]) == 0
    saved = json.loads((tmp_path / "out" / "model" / "finetuner.json").read_text())
    assert saved["training"]["learning_rate"] == 0.01 and saved["training"]["examples"] == 32
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo\n")
    assert main(["encode", str(tmp_path / "out" / "model"), str(texts), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (2, 16)
