"""Every artifact carries a README.md model card that huggingface_hub parses and whose metadata validates."""

from __future__ import annotations

import csv

import pytest
import yaml

import finetuner
from finetuner.data import PairData
from finetuner.model_card import metadata, model_config
from tests.core.helpers import topic_pairs

huggingface_hub = pytest.importorskip("huggingface_hub")


def _write_csv(path, rows) -> str:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("query", "document"), *rows])
    return str(path)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---", 2)[1])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A fit of the dummy text tower on CSV files: the artifact folder."""
    folder = tmp_path_factory.mktemp("card")
    pairs = topic_pairs(60)
    train, evaluation = _write_csv(folder / "train.csv", pairs[:40]), _write_csv(folder / "eval.csv", pairs[40:])
    finetuner.fit("dummy-text", train, evaluation, epochs=1, batch_size=8, output_dir=folder / "run", verbose=False)
    return folder / "run" / "model"


def test_the_card_of_a_fit_parses_and_its_metadata_validates(fitted):
    card = huggingface_hub.ModelCard.load(fitted / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag) == ("finetuner", "sentence-similarity")
    assert {"finetuner", "text-to-text"} <= set(data.tags)
    assert data.datasets is None and data.base_model is None  # local CSV files and a dummy tower: nothing on the Hub
    metrics = finetuner.load(fitted).metrics
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values["recall@10"] == pytest.approx(metrics["after"]["recall@10"], abs=1e-4)
    assert values["recall@10_before"] == pytest.approx(metrics["before"]["recall@10"], abs=1e-4)
    assert {r.task_type for r in data.eval_results} == {"sentence-similarity"}
    assert {r.dataset_name for r in data.eval_results} == {"eval.csv"}
    # What huggingface_hub writes back from the parsed metadata is what the card holds: it is in the Hub's canonical shape.
    assert data.to_dict() == _front_matter((fitted / "README.md").read_text())


def test_the_body_has_the_results_the_recipe_and_the_usage(fitted):
    text = (fitted / "README.md").read_text()
    for expected in (
        "# dummy-text fine-tuned with finetuner",
        "| metric | before | after | change |",
        "| recall@10 |",
        "| loss | `MultipleNegativesRankingLoss` |",
        "| batch size | `8` |",
        f'model = finetuner.load("{fitted}")',
        f"finetuner export --sentence-transformers {fitted}",
    ):
        assert expected in text, expected


def test_local_data_is_named_by_its_file(fitted):
    text = (fitted / "README.md").read_text()
    assert "| training data | `train.csv` (40 examples, pairs) |" in text
    assert "Evaluated on `eval.csv` before and after fine-tuning" in text
    assert str(fitted.parent.parent / "train.csv") not in text  # the local folder stays off a card that may be pushed


@pytest.mark.parametrize(
    ("source", "datasets"), [("org/cisi-pairs", ["org/cisi-pairs"]), ("CISI train queries", None)], ids=["hub-id", "name"]
)
def test_the_training_data_source_names_the_dataset(tmp_path, source, datasets):
    pairs = topic_pairs(24)
    train = PairData(queries=[q for q, _ in pairs], documents=[d for _, d in pairs], source=source)
    finetuner.fit("dummy-text", train, epochs=1, batch_size=8, output_dir=tmp_path, verbose=False)
    path = tmp_path / "model" / "README.md"
    card = huggingface_hub.ModelCard.load(path)
    assert card.data.datasets == datasets  # only a Hub id goes in the metadata
    assert card.data.to_dict() == _front_matter(path.read_text())
    assert f"| training data | `{source}` (24 examples, pairs) |" in card.text


def test_the_card_renders_to_html(fitted):
    markdown = pytest.importorskip("markdown")
    body = (fitted / "README.md").read_text().split("---", 2)[2]
    html = markdown.markdown(body, extensions=["tables", "fenced_code"])
    assert html.count("<table>") == 2 and "<h2>Results</h2>" in html and "<code" in html


def test_base_model_is_recorded_and_survives_a_load(tmp_path):
    model = finetuner.build_model("dummy-text")
    model.tower().base_model = "org/base-encoder"
    model.sources[0]["base_model"] = "org/base-encoder"  # as build_model records a tower's base_model
    finetuner.save(model, tmp_path / "a")
    assert _front_matter((tmp_path / "a" / "README.md").read_text())["base_model"] == "org/base-encoder"
    finetuner.save(finetuner.load(tmp_path / "a"), tmp_path / "b")
    assert _front_matter((tmp_path / "b" / "README.md").read_text())["base_model"] == "org/base-encoder"


def test_build_model_records_the_tower_base_model(monkeypatch):
    from finetuner_dummy.towers import TrigramTower

    monkeypatch.setattr(TrigramTower, "base_model", "org/trigrams", raising=False)
    assert finetuner.build_model("dummy-text").sources[0]["base_model"] == "org/trigrams"


@pytest.mark.parametrize(
    ("source", "datasets"), [("org/dataset", ["org/dataset"]), ("data/train.csv", None), ("<list>", None), (None, None)]
)
def test_datasets_name_hub_data_only(source, datasets):
    config = {**model_config(finetuner.build_model("dummy-text")), "training": {"data_source": source}}
    assert metadata(config).get("datasets") == datasets


def test_pipeline_tags_and_export_libraries():
    image, joined = finetuner.build_model("dummy-image"), finetuner.build_model("dummy-text+dummy-image")
    assert metadata(model_config(image))["pipeline_tag"] == "image-feature-extraction"
    assert metadata(model_config(joined), "transformers")["pipeline_tag"] == "zero-shot-image-classification"
    assert metadata(model_config(joined), "transformers")["library_name"] == "transformers"
    assert "model-index" not in metadata(model_config(image))  # no metrics, no model-index
