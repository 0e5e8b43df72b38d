"""examples/tower-from-scratch: the plugin `finetuner-trigram`, installed through its entry point, and its guide."""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

import finetuner
from finetuner.cli import main

if "trigram" not in {ep.name for ep in entry_points(group="finetuner")}:
    pytest.skip("the example plugin finetuner-trigram (examples/tower-from-scratch) is not installed", allow_module_level=True)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tower-from-scratch"
GUIDE = (EXAMPLE / "README.md").read_text()
RUNNABLE = "import finetuner\n"  # the one block that runs; the others quote the package's files


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def test_finetuner_models_lists_the_example(capsys):
    assert main(["models", "--json", "--task", "text-to-text"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["model"] == "char-trigrams")
    assert (row["output_dim"], row["architecture"], row["plugin"]) == (64, "bag of character trigrams", "trigram")


def test_the_guide_quotes_the_package_files_as_they_are():
    sources = [path.read_text() for path in (EXAMPLE / "src" / "finetuner_trigram").glob("*.py")]
    quoted = [block for block in blocks("python") if not block.startswith(RUNNABLE)]
    assert len(quoted) >= 5
    for block in quoted:
        assert any(block in source for source in sources), f"the guide's block is not in the package:\n{block}"
    assert all(block in (EXAMPLE / "pyproject.toml").read_text() for block in blocks("toml"))


def test_the_guide_trains_the_model_from_nothing(tmp_path, monkeypatch):
    (code,) = [block for block in blocks("python") if block.startswith(RUNNABLE)]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(
        compile(code.replace('output_dir="trigram-run"', 'output_dir="trigram-run", verbose=False'), "README", "exec"), namespace
    )
    model, same = namespace["model"], namespace["same"]
    assert model.metrics["after"]["mrr@10"] > model.metrics["before"]["mrr@10"] + 0.3
    assert namespace["vectors"].shape == (2, 64)
    texts = [query for query, _ in namespace["faq"]]
    np.testing.assert_allclose(
        finetuner.encode(same, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )


def test_a_saved_model_loads_back_with_its_options(tmp_path):
    model = finetuner.build_model("char-trigrams", buckets=512, output_dim=8)
    finetuner.save(model, tmp_path / "artifact")
    loaded = finetuner.load(tmp_path / "artifact")
    assert loaded.sources[0]["plugin"] == "trigram" and loaded.tower().bag.num_embeddings == 512
    texts = ["a query", "a longer document about something", ""]
    np.testing.assert_allclose(
        finetuner.encode(loaded, texts, precision="fp32"), finetuner.encode(model, texts, precision="fp32"), atol=1e-6
    )
    with pytest.raises(finetuner.DataError, match="is int, not a string"):
        finetuner.encode(model, ["text", 3])
