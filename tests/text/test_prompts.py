"""Prompts: encode(prompt=/prompt_name=), the query/document prompts in evaluate and fit, and their place in the artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest

import finetuner
from finetuner.cli import main
from finetuner.data.types import PairData
from finetuner.prompts import prompts_of, set_prompts
from finetuner.training.options import FitOptions

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = ["hello world", "a short text", "search the document"]


@pytest.fixture
def model(tiny_folder):
    built = finetuner.build_model(f"hf:{tiny_folder}")
    set_prompts(built, PROMPTS)
    return built


@pytest.fixture
def seen(model, monkeypatch):
    """Every text the text tower tokenizes, by encode (batches) and by training (preprocess)."""
    texts: list[str] = []
    tower = model.tower("text")
    batches, preprocess = tower.batches, tower.preprocess

    def spy_batches(items, batch_size):
        texts.extend(items)
        return batches(items, batch_size)

    def spy_preprocess(items):
        texts.extend(items)
        return preprocess(items)

    monkeypatch.setattr(tower, "batches", spy_batches)
    monkeypatch.setattr(tower, "preprocess", spy_preprocess)
    return texts


def test_a_prompt_is_put_before_each_text_once(model, seen):
    by_name = finetuner.encode(model, TEXTS, prompt_name="query", precision="fp32")
    assert seen == ["query: " + t for t in TEXTS]
    seen.clear()
    by_text = finetuner.encode(model, TEXTS, prompt="query: ", precision="fp32")
    assert seen == ["query: " + t for t in TEXTS]
    prefixed = finetuner.encode(model, ["query: " + t for t in TEXTS], precision="fp32")
    np.testing.assert_allclose(by_name, prefixed, atol=1e-6)
    np.testing.assert_allclose(by_text, prefixed, atol=1e-6)
    plain = finetuner.encode(model, TEXTS, precision="fp32")
    assert not np.allclose(plain, prefixed, atol=1e-3)


def test_the_default_prompt_applies_when_none_is_given(model, seen):
    set_prompts(model, PROMPTS, default_name="document")
    finetuner.encode(model, TEXTS)
    finetuner.encode(model, TEXTS, prompt="")  # an empty prompt asks for none
    assert seen == ["passage: " + t for t in TEXTS] + TEXTS


def test_an_unknown_prompt_name_lists_the_known_ones(model):
    with pytest.raises(finetuner.UnknownNameError, match=r"unknown prompt name 'title'.*Valid: document, query"):
        finetuner.encode(model, TEXTS, prompt_name="title")
    with pytest.raises(finetuner.FinetunerError, match="not both"):
        finetuner.encode(model, TEXTS, prompt="q: ", prompt_name="query")


def test_evaluate_gives_queries_the_query_prompt_and_documents_the_document_prompt(model, seen):
    pairs = PairData(["hello", "world"], ["the text", "a document"], negatives=[["short"], ["longer"]])
    metrics = finetuner.evaluate(model, pairs, k=1, precision="fp32")
    assert set(seen) == {
        "query: hello",
        "query: world",
        "passage: the text",
        "passage: a document",
        "passage: short",
        "passage: longer",
    }
    assert 0 <= metrics["recall@1"] <= 1


def test_fit_trains_with_the_prompts_and_keeps_them(model, seen, tmp_path):
    pairs = PairData(["hello", "world", "search", "query"], ["the text", "a document", "short", "longer"])
    trained = finetuner.fit(
        model,
        pairs,
        output_dir=tmp_path / "run",
        epochs=1,
        batch_size=2,
        prompts={"query": "q: ", "passage": "p: "},
        verbose=False,
    )
    trained_on = set(seen)
    assert {"q: hello", "q: world", "q: search", "q: query"} <= trained_on
    assert {"p: the text", "p: a document", "p: short", "p: longer"} <= trained_on
    assert not trained_on & {"hello", "the text", "query: hello", "passage: the text"}
    assert prompts_of(trained) == {"query": "q: ", "passage": "p: "}
    config = json.loads((tmp_path / "run" / "model" / "finetuner.json").read_text())
    assert config["prompts"] == {"query": "q: ", "passage": "p: "}
    loaded = finetuner.load(tmp_path / "run" / "model")
    assert prompts_of(loaded) == {"query": "q: ", "passage": "p: "}
    np.testing.assert_allclose(
        finetuner.encode(loaded, TEXTS, prompt_name="passage", precision="fp32"),
        finetuner.encode(trained, ["p: " + t for t in TEXTS], precision="fp32"),
        atol=1e-6,
    )


def test_the_prompts_option_reads_a_mapping_from_the_command_line_and_refuses_others():
    assert FitOptions(prompts='{"query": "query: ", document: "passage: "}').prompts == PROMPTS
    with pytest.raises(finetuner.FinetunerError, match="prompts must map prompt names to prefixes"):
        FitOptions(prompts={"query": 3})


def test_encode_command_takes_a_prompt_name(model, tmp_path, capsys):
    finetuner.save(model, tmp_path / "artifact")
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "e.npy"
    expected = finetuner.encode(model, ["query: " + t for t in TEXTS], precision="fp32")
    for prompt in (["--prompt-name", "query"], ["--prompt", "query: "]):
        command = ["encode", str(tmp_path / "artifact"), str(tmp_path / "texts.txt"), "-o", str(out), "--precision", "fp32"]
        assert main([*command, *prompt]) == 0
        np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
        out.unlink()
