"""Robust fine-tuning: WiSE-FT interpolation (fit option and `finetuner evaluate --wise-ft`) and layer-wise lr decay."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from torch import nn

import finetuner
from finetuner.cli import main
from finetuner.models import EmbeddingModel, Tower
from finetuner.training.layer_decay import layer_scales
from finetuner.training.optim import build_optimizer
from finetuner.training.wise_ft import interpolate, tower_weights
from tests.core.helpers import topic_pairs


def stack(n: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(4, 4) for _ in range(n))


class BlockTower(Tower):
    """A text tower named like a BERT encoder: embeddings, encoder.layer.N, pooler."""

    modality = "text"
    output_dim = 4

    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.embeddings = nn.EmbeddingBag(64, 4)
        self.encoder = nn.Module()
        self.encoder.layer = stack(layers)
        self.pooler = nn.Linear(4, 4)

    def preprocess(self, items):
        ids = [sum(map(ord, word)) % 64 for text in items for word in text.split()[:1]]
        return {"ids": torch.tensor(ids).unsqueeze(1)}

    def forward(self, features):
        x = self.embeddings(features["ids"])
        for layer in self.encoder.layer:
            x = x + torch.tanh(layer(x))
        return self.pooler(x)


def test_interpolation_is_exact_at_both_ends_and_linear_between():
    model = finetuner.build_model("dummy-text", output_dim=8)
    start = tower_weights(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    tuned, head = tower_weights(model), {k: v.clone() for k, v in model.projections.state_dict().items()}
    for alpha in (1.0, 0.0, 0.25):
        interpolate(model, start, alpha)
        now = tower_weights(model)
        for name in start:
            expected = {1.0: tuned[name], 0.0: start[name]}.get(alpha, 0.25 * tuned[name] + 0.75 * start[name])
            assert torch.equal(now[name], expected) if alpha in (0.0, 1.0) else torch.allclose(now[name], expected)
        interpolate(model, tuned, 0.0)  # back to the fine-tuned weights
    assert all(torch.equal(v, model.projections.state_dict()[k]) for k, v in head.items())  # the head is not the towers'


def test_fit_wise_ft_zero_restores_the_towers_and_keeps_the_trained_head():
    model = finetuner.build_model("dummy-text", output_dim=8)
    start, head = tower_weights(model), {k: v.clone() for k, v in model.projections.state_dict().items()}
    finetuner.fit(model, topic_pairs(32), epochs=1, batch_size=8, learning_rate=1e-2, wise_ft=0.0, output_dir=None, verbose=False)
    assert all(torch.equal(v, tower_weights(model)[k]) for k, v in start.items())
    assert any(not torch.equal(v, model.projections.state_dict()[k]) for k, v in head.items())


def test_fit_wise_ft_half_is_the_midpoint_of_a_plain_run():
    def run(**options):
        torch.manual_seed(0)
        model = finetuner.build_model("dummy-text")
        start = tower_weights(model)
        finetuner.fit(
            model, topic_pairs(32), epochs=1, batch_size=8, learning_rate=1e-2, output_dir=None, verbose=False, **options
        )
        return start, tower_weights(model)

    start, tuned = run()
    _, half = run(wise_ft=0.5)
    for name, value in half.items():
        torch.testing.assert_close(value, 0.5 * tuned[name] + 0.5 * start[name])


def test_evaluate_wise_ft_prints_one_row_per_alpha(tmp_path, capsys):
    rows = topic_pairs(24)
    finetuner.fit("dummy-text", rows, epochs=1, batch_size=8, output_dir=tmp_path, verbose=False)
    data = tmp_path / "eval.csv"
    data.write_text("query,document\n" + "".join(f"{q},{d}\n" for q, d in rows))
    assert main(["evaluate", str(tmp_path / "model"), str(data), "--wise-ft", "0,0.5,1", "--metrics", "recall@5"]) == 0
    table = capsys.readouterr().out
    assert [m[1] for line in table.splitlines() if (m := re.match(r"^│\s*([\d.]+)\s*│", line))] == ["0", "0.5", "1"]
    assert "recall@5" in table
    assert main(["evaluate", str(tmp_path / "model"), str(data), "--metrics", "recall@5", "--json"]) == 0
    plain = capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "model"), str(data), "--wise-ft", "1", "--metrics", "recall@5", "--json"]) == 0
    assert f'"1.0": {plain.strip()}'.replace("\n", "").replace(" ", "") in capsys.readouterr().out.replace("\n", "").replace(
        " ", ""
    )


def test_evaluate_refuses_alphas_outside_zero_to_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "dummy-text", str(tmp_path / "eval.csv"), "--wise-ft", "0,1.5"])
    assert "each alpha must be from 0 to 1" in capsys.readouterr().err


def test_layer_decay_learning_rates_follow_the_depth():
    tower = BlockTower(layers=3)
    model = EmbeddingModel({"text": tower}, output_dim=2)
    optimizer = build_optimizer(
        "AdamW", model.parameters(), learning_rate=1.0, weight_decay=0.0, lr_scales=layer_scales(model, 0.5)
    )
    lr = {p: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    # top = 3 blocks + 1: embeddings at depth 0, block n at n + 1, the pooler (after the blocks) and the head at the top
    assert lr[tower.embeddings.weight] == 0.5**4
    assert [lr[layer.weight] for layer in tower.encoder.layer] == [0.5**3, 0.5**2, 0.5**1]
    assert lr[tower.pooler.weight] == lr[model.projections["text"].weight] == 1.0
    assert optimizer.param_groups[0]["lr_scale"] == 1.0  # the full-rate group first: the one the progress bar shows


@pytest.mark.parametrize(
    ("names", "depths"),
    [
        # Hugging Face CLIP / SigLIP towers
        (
            ["vision_model.embeddings.patch_embedding.weight", "vision_model.pre_layrnorm.weight"]
            + ["vision_model.encoder.layers.0.mlp.fc1.weight", "vision_model.encoder.layers.1.mlp.fc1.weight"]
            + ["vision_model.post_layernorm.weight", "visual_projection.weight"],
            [0, 0, 1, 2, 3, 3],
        ),
        # open_clip
        (
            ["visual.conv1.weight", "visual.class_embedding", "visual.ln_pre.weight"]
            + ["visual.transformer.resblocks.0.mlp.c_fc.weight", "visual.ln_post.weight", "visual.proj"],
            [0, 0, 0, 1, 2, 2],
        ),
        # DistilBERT
        (["encoder.embeddings.word_embeddings.weight", "encoder.transformer.layer.0.ffn.lin1.weight"], [0, 1]),
    ],
)
def test_layer_depths_of_known_architectures(names, depths):
    from finetuner.training.layer_decay import tower_depths

    module = nn.Module()
    for name in names:
        *path, leaf = name.split(".")
        owner = module
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(leaf, nn.Parameter(torch.zeros(1)))
    found, _ = tower_depths(module, "the tower")
    assert [found[name] for name in names] == depths


def test_layer_decay_names_the_option_for_a_tower_without_blocks():
    with pytest.raises(finetuner.TrainingError, match=r"layer_decay cannot number the layers of the text tower \(TrigramTower\)"):
        finetuner.fit("dummy-text", topic_pairs(16), batch_size=8, layer_decay=0.75, output_dir=None, verbose=False)


def test_resume_keeps_the_decayed_learning_rates(tmp_path, caplog):
    from finetuner.data import load_data
    from finetuner.training.distributed import DistributedContext
    from finetuner.training.options import FitOptions
    from finetuner.training.trainer import Trainer

    def trainer(epochs: int) -> Trainer:
        torch.manual_seed(0)
        opts = FitOptions(epochs=epochs, batch_size=8, layer_decay=0.5, device="cpu", verbose=False)
        model = EmbeddingModel({"text": BlockTower()})
        return Trainer(model, load_data(topic_pairs(32)), None, opts, [], tmp_path, DistributedContext.setup("cpu"))

    trainer(1).train()  # leaves a checkpoint after its epoch
    resumed = trainer(2)
    planned = list(resumed.scheduler.base_lrs)
    with caplog.at_level(logging.INFO, logger="finetuner"):
        resumed.resume()
    assert "resumed from" in caplog.text and "replaces the checkpoint's" not in caplog.text
    assert resumed.scheduler.base_lrs == planned and len(set(planned)) > 1
