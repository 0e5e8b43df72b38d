"""WiSE-FT on a LoRA model interpolates the effective weights ``W + s * B @ A`` exactly (fit and evaluate --wise-ft)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import finetuner
from finetuner.cli import main
from finetuner.lora import merged
from finetuner.training.wise_ft import interpolate, tower_weights
from tests.core.helpers import topic_pairs

pytest.importorskip("peft", reason="the lora extra (peft) is not installed")
pytest.importorskip("finetuner_text", reason="the text plugin is not installed")
from tests.text.tiny_models import write_bert  # noqa: E402 (needs transformers, which the text plugin brings)

TEXTS = ["hello world", "a longer query text of the document", "search"]
OPTIONS = {
    "epochs": 1,
    "batch_size": 8,
    "learning_rate": 1e-2,
    "precision": "fp32",
    "device": "cpu",
    "verbose": False,
    "lora": {"r": 4},
    "output_dim": 8,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return f"hf:{write_bert(tmp_path_factory.mktemp('wise-lora') / 'bert', hidden=32, cased=False, seed=1)}"


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory) -> dict[str, finetuner.EmbeddingModel]:
    """The pretrained base, a LoRA fit saved as an artifact, and the same fit with wise_ft=0.5."""
    out = tmp_path_factory.mktemp("wise-lora-run")
    return {
        "pretrained": finetuner.build_model(base),
        "tuned": finetuner.fit(base, topic_pairs(32), output_dir=out, **OPTIONS),
        "half": finetuner.fit(base, topic_pairs(32), output_dir=None, wise_ft=0.5, **OPTIONS),
        "artifact": out / "model",
    }


def _encode(model) -> np.ndarray:
    return finetuner.encode(model, TEXTS, precision="fp32", device="cpu")


def test_fit_wise_ft_interpolates_the_effective_weights_exactly(runs):
    start, tuned, half = (tower_weights(runs[k]) for k in ("pretrained", "tuned", "half"))
    assert set(half) == set(start) == set(tuned)  # adapters folded in, under the plain layers' names
    moved = max((tuned[n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-2  # training changed the effective weights, so a wrong interpolation shows
    for name, value in half.items():
        torch.testing.assert_close(value, 0.5 * start[name] + 0.5 * tuned[name], atol=1e-6, rtol=0, msg=name)
    # what the model holds: still adapters, B scaled by alpha, A and the frozen base as trained
    weights = {k: dict(runs[k].towers.named_parameters()) for k in ("tuned", "half")}
    for name, value in weights["half"].items():
        factor = 0.5 if ".lora_B." in name else 1.0
        torch.testing.assert_close(value, factor * weights["tuned"][name], atol=1e-7, rtol=0, msg=name)


def test_interpolating_a_and_b_each_would_not_be_exact(runs):
    """The bug fixed: scaling both factors by alpha scales ``B @ A`` by alpha squared (guards the test above)."""
    model, start = runs["tuned"], tower_weights(runs["pretrained"])
    expected = {n: 0.5 * v + 0.5 * tower_weights(model)[n] for n, v in start.items()}
    naive = {n: t.clone() for n, t in model.towers.state_dict().items()}
    for name, t in naive.items():
        if ".lora_A." in name or ".lora_B." in name:
            t.mul_(0.5)
    copy = finetuner.load(runs["artifact"])
    copy.towers.load_state_dict(naive)
    assert max((tower_weights(copy)[n] - expected[n]).abs().max().item() for n in start) > 1e-3


def test_the_interpolated_model_saves_loads_and_merges_to_equal_embeddings(runs, tmp_path):
    half = runs["half"]
    expected = _encode(half)
    assert np.abs(expected - _encode(runs["tuned"])).max() > 1e-4
    np.testing.assert_allclose(_encode(merged(half)), expected, atol=1e-6)
    finetuner.save(half, tmp_path / "half")
    assert json.loads((tmp_path / "half" / "finetuner.json").read_text())["lora"]  # an adapter artifact still
    np.testing.assert_allclose(_encode(finetuner.load(tmp_path / "half")), expected, atol=1e-6)


def test_alpha_one_keeps_the_model_and_alpha_zero_gives_the_pretrained_towers(runs):
    model = finetuner.load(runs["artifact"])
    own = {n: t.clone() for n, t in model.towers.state_dict().items()}
    start = tower_weights(runs["pretrained"])
    interpolate(model, start, 1.0)
    assert all(torch.equal(t, own[n]) for n, t in model.towers.state_dict().items())
    interpolate(model, start, 0.0)
    now = tower_weights(model)
    assert all(torch.equal(now[n], v) for n, v in start.items())  # B is zero: the adapters add nothing


def _without_adapters(artifact: Path) -> finetuner.EmbeddingModel:
    """The artifact's model with every B zeroed: the pretrained towers and the trained head."""
    model = finetuner.load(artifact)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if ".lora_B." in name:
                weight.zero_()
    return model


def test_evaluate_wise_ft_on_a_lora_artifact_evaluates_the_interpolated_models(runs, tmp_path, monkeypatch, capsys):
    import finetuner.evaluation

    rows = topic_pairs(24)
    data = tmp_path / "eval.csv"
    data.write_text("query,document\n" + "".join(f"{q},{d}\n" for q, d in rows))
    seen, evaluate = [], finetuner.evaluation.evaluate

    def spy(model, *args, **kwargs):
        seen.append(_encode(model))
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(finetuner.evaluation, "evaluate", spy)
    args = ["evaluate", str(runs["artifact"]), str(data), "--wise-ft", "0,0.5,1", "--metrics", "recall@5", "--json"]
    assert main(args) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["0.0", "0.5", "1.0"]
    expected = (_without_adapters(runs["artifact"]), runs["half"], runs["tuned"])
    for embeddings, model in zip(seen, expected, strict=True):
        np.testing.assert_allclose(embeddings, _encode(model), atol=1e-6)
