"""Reports: the before/after table fit() prints, example queries in the artifact, report.png/report.html, `finetuner report`."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import finetuner
from finetuner.cli import main
from finetuner.data import load_data
from finetuner.data.types import LabeledData, PairData, RetrievalData, ScoredData
from finetuner.evaluation.examples import select_examples
from finetuner.report.metrics import comparison, headline
from finetuner.report.plots import curve_metrics, moving_average
from finetuner.report.training import write_report
from finetuner.training.callbacks import Callback
from tests.core.helpers import pairs

FAST = {"batch_size": 8, "learning_rate": 5e-2, "precision": "fp32", "verbose": False}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def squares(per_class: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    images = [
        np.clip(np.array(rgb) + rng.integers(-30, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
        for rgb in colours.values()
        for _ in range(per_class)
    ]
    return images, [name for name in colours for _ in range(per_class)]


def config(artifact: Path) -> dict:
    return json.loads((artifact / "finetuner.json").read_text())


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 300 and image.height > 200


def check_examples(examples: list[dict], count: int = 5, k: int = 5) -> None:
    assert len(examples) == count
    for example in examples:
        for side in ("before", "after"):
            results = example[side]
            assert len(results) == k
            assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
            assert all(isinstance(r["relevant"], bool) for r in results)


# --- the before/after table -------------------------------------------------------------------


def test_fit_prints_the_headline_metrics_before_after_and_change_and_saves_them_all(tmp_path, capsys):
    train, held_out = pairs(48), pairs(24, seed=1)
    model = finetuner.fit("dummy-text", train, held_out, epochs=2, output_dir=tmp_path, **{**FAST, "verbose": True})
    printed = capsys.readouterr().out
    before, after = model.metrics["before"], model.metrics["after"]
    row = next(line for line in printed.splitlines() if re.match(r"│ recall@10 ", line))
    numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d{4}", row)]
    assert numbers == pytest.approx([before["recall@10"], after["recall@10"], after["recall@10"] - before["recall@10"]], abs=1e-4)
    assert "before" in printed and "change" in printed and "recall@1 " in printed
    assert "recall@5 " not in printed and "12 of 24 metrics shown" in printed  # k = 1 and 10 only; the rest in the JSON
    saved = config(tmp_path / "model")["metrics"]
    assert set(saved["before"]) == set(saved["after"]) == set(after) and len(after) == 24
    assert saved["after"]["recall@5"] == pytest.approx(after["recall@5"])
    # the report follows: example queries with their results, and where the files are
    first = model.examples[0]
    assert f"example 1/5: {first['query']}" in printed
    assert first["after"][0]["item"][:40] in printed
    assert f"report: {tmp_path / 'model' / 'report.png'}, {tmp_path / 'model' / 'report.html'}" in printed


def test_headline_keeps_k_1_and_10_and_the_metrics_without_k():
    metrics = {f"{d}{f}@{k}": 0.5 for d in ("t2i/", "i2t/") for f in ("recall", "ndcg") for k in (1, 5, 10, 20)}
    metrics.update({"map@r": 0.1, "r_precision": 0.2})
    assert sorted(headline(metrics)) == sorted(
        [f"{d}{f}@{k}" for d in ("t2i/", "i2t/") for f in ("recall", "ndcg") for k in (1, 10)] + ["map@r", "r_precision"]
    )
    assert sorted(headline({"recall@3": 1.0, "recall@50": 1.0, "recall@7": 1.0})) == [
        "recall@3",
        "recall@50",
    ]  # no 1 or 10: smallest and largest
    assert "shown" not in comparison({"spearman": 0.1}, {"spearman": 0.3})


# --- examples, per kind of data ----------------------------------------------------------------


def test_text_pairs_report_png_html_and_examples(tmp_path):
    train, held_out = pairs(48), pairs(24, seed=1)
    model = finetuner.fit("dummy-text", train, held_out, epochs=2, eval_every_steps=4, output_dir=tmp_path, **FAST)
    artifact = tmp_path / "model"
    examples = config(artifact)["examples"]
    assert examples == model.examples
    check_examples(examples)
    queries = {q for q, _ in held_out}
    documents = {q: d for q, d in held_out}
    for example in examples:
        assert example["query"] in queries and example["expected"] == [documents[example["query"]]]
        assert example["query_modality"] == example["result_modality"] == "text"
        for entry in example["before"] + example["after"]:
            assert entry["item"] in documents.values()
            assert entry["relevant"] == (entry["item"] == documents[example["query"]])
    assert_png(artifact / "report.png")
    page = (artifact / "report.html").read_text()
    assert '<img src="report.png"' in page and examples[0]["query"] in page and "<td>recall@10</td>" in page
    finetuner.load(artifact)  # the report files do not disturb loading


def test_examples_before_are_the_untrained_models_results(tmp_path):
    held_out = pairs(24, seed=1)
    untrained = finetuner.build_model("dummy-text")
    probe = select_examples(load_data(held_out))
    expected = probe.top(untrained, precision="fp32")
    tuned = finetuner.fit(untrained, pairs(48), held_out, epochs=1, output_dir=None, **FAST)
    assert [e["before"] for e in tuned.examples] == expected
    assert [e["after"] for e in tuned.examples] == probe.top(tuned, precision="fp32") != expected


def test_labeled_in_memory_images_get_thumbnails_and_labels(tmp_path):
    images, labels = squares(8)
    data = list(zip(images, labels, strict=True))
    finetuner.fit("dummy-image", data, data, kind="labeled", epochs=1, output_dir=tmp_path, **FAST)
    artifact = tmp_path / "model"
    examples = config(artifact)["examples"]
    check_examples(examples)
    assert {e["label"] for e in examples[:3]} == {"blue", "green", "red"}  # one query per label first, then any item
    for example in examples:
        assert example["query_modality"] == example["result_modality"] == "image" and "expected" not in example
        assert example["searched"] == len(images) - 1  # every other item, never the query itself
        for entry in example["after"]:
            assert entry["relevant"] == (entry["label"] == example["label"])
            header, _, payload = entry["item"].partition(",")
            assert header == "data:image/png;base64"
            with Image.open(io.BytesIO(base64.b64decode(payload))) as thumbnail:
                assert thumbnail.format == "PNG" and thumbnail.size == (16, 16)
    page = (artifact / "report.html").read_text()
    assert page.count('<img class="item" src="data:image/png;base64,') == 5 * (1 + 10)  # each query, then 5 before + 5 after
    assert "[red]" in page
    assert_png(artifact / "report.png")


def test_labeled_examples_pick_distinct_labels_first():
    data = LabeledData(items=[f"item {i}" for i in range(40)], labels=[f"l{i % 8}" for i in range(40)])
    probe = select_examples(data)
    assert len(set(probe.query_labels)) == 5
    assert select_examples(data).queries == probe.queries  # deterministic
    assert select_examples(LabeledData(items=["a", "b"], labels=["x", "y"])) is None  # no item has a match


def test_text_to_image_pairs_with_image_files_link_them_from_the_page(tmp_path):
    images, labels = squares(4)
    folder = tmp_path / "images"
    folder.mkdir()
    files = []
    for i, image in enumerate(images):
        files.append(folder / f"{labels[i]}-{i}.png")
        Image.fromarray(image).save(files[-1])
    data = [(f"a {label} square number {i}", path) for i, (label, path) in enumerate(zip(labels, files, strict=True))]
    model = finetuner.build_model("dummy-text+dummy-image", output_dim=8)
    finetuner.fit(model, data, data, epochs=1, batch_size=4, output_dir=tmp_path / "run", verbose=False, precision="fp32")
    artifact = tmp_path / "run" / "model"
    examples = config(artifact)["examples"]
    check_examples(examples)
    for example in examples:
        assert (example["query_modality"], example["result_modality"]) == ("text", "image")
        assert all(Path(entry["item"]).is_absolute() and Path(entry["item"]).is_file() for entry in example["after"])
    page = (artifact / "report.html").read_text()
    sources = re.findall(r'<img class="item" src="([^"]+)"', page)
    assert len(sources) == 5 * (1 + 10)  # expected document, 5 before, 5 after per query
    assert all((artifact / source).resolve().is_file() for source in sources)  # relative to the page
    assert examples[0]["query"] in page


def test_retrieval_examples_include_relevant_documents_within_the_corpus_cap():
    corpus = {f"d{i}": f"document {i}" for i in range(1000)}
    queries = {f"q{i}": f"query {i}" for i in range(50)}
    qrels = {f"q{i}": {f"d{i * 20}": 1, f"d{i * 20 + 1}": 0} for i in range(50)}
    probe = select_examples(RetrievalData(queries=queries, corpus=corpus, qrels=qrels), max_corpus=100)
    assert len(probe.queries) == 5 and len(probe.corpus) == 100
    for query, relevant in zip(probe.queries, probe.relevant, strict=True):
        number = int(query.split()[1])
        assert [probe.corpus[p] for p in relevant] == [f"document {number * 20}"]  # grade 0 is not relevant


def test_pairs_corpus_is_capped_and_keeps_the_positives():
    data = PairData(queries=[f"q{i}" for i in range(600)], documents=[f"d{i}" for i in range(600)])
    probe = select_examples(data, count=4, max_corpus=64)
    assert len(probe.queries) == 4 and len(probe.corpus) == 64
    assert all(probe.corpus[next(iter(r))] == q.replace("q", "d") for q, r in zip(probe.queries, probe.relevant, strict=True))


def test_scored_data_has_no_examples_but_still_a_report(tmp_path):
    rows = [(f"w{i} a", f"w{i} b", float(i % 5)) for i in range(32)]
    assert select_examples(ScoredData(a=[r[0] for r in rows], b=[r[1] for r in rows], scores=[r[2] for r in rows])) is None
    model = finetuner.fit("dummy-text", rows, rows, epochs=1, output_dir=tmp_path, **FAST)
    assert model.examples == [] and config(tmp_path / "model")["examples"] == []
    assert_png(tmp_path / "model" / "report.png")
    assert "<td>spearman</td>" in (tmp_path / "model" / "report.html").read_text()


# --- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    finetuner.fit("dummy-text", pairs(48), pairs(24, seed=1), epochs=2, output_dir=out, **FAST)
    return out / "model"


def test_cli_report_prints_examples_and_writes_the_files_elsewhere(trained, tmp_path, capsys):
    target = tmp_path / "reports" / "one"
    assert main(["report", str(trained), "--output", str(target)]) == 0
    printed = capsys.readouterr().out
    example = config(trained)["examples"][2]
    assert f"example 3/5: {example['query']}" in printed
    assert example["before"][0]["item"] in printed and example["after"][0]["item"] in printed
    assert f"curves: {target / 'report.png'}" in printed and f"page: {target / 'report.html'}" in printed
    assert_png(target / "report.png")
    assert example["query"] in (target / "report.html").read_text()


def test_cli_report_on_an_artifact_fit_did_not_write_fails_clearly(tmp_path, capsys):
    finetuner.save(finetuner.build_model("dummy-text"), tmp_path / "plain")
    assert main(["report", str(tmp_path / "plain")]) == 1
    assert "has no training history or examples to report" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "finetuner.json is missing" in capsys.readouterr().err


def test_without_matplotlib_the_png_is_skipped_with_a_warning(trained, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import fails as if not installed
    report = write_report(trained, tmp_path)
    assert report.png is None and not (tmp_path / "report.png").exists()
    assert "matplotlib is not installed" in caplog.text
    page = report.html.read_text()
    assert "report.png" not in page and "<h3>" in page


def test_a_resumed_run_keeps_the_examples_of_the_untrained_model(tmp_path):
    class StopAtThree(Callback):
        def on_step_end(self, state) -> None:
            state.stop = state.step == 3

    train, held_out = pairs(40), pairs(24, seed=1)
    reference = finetuner.fit("dummy-text", train, held_out, epochs=2, output_dir=None, **FAST)
    out = tmp_path / "run"
    finetuner.fit(
        "dummy-text", train, held_out, epochs=2, checkpoint_every_steps=1, callbacks=[StopAtThree()], output_dir=out, **FAST
    )
    resumed = finetuner.fit("dummy-text", train, held_out, epochs=2, resume=True, output_dir=out, **FAST)
    assert resumed.examples == reference.examples  # before (from the checkpoint) and after
    assert config(out / "model")["examples"][0]["before"]


def test_moving_average_and_the_metrics_chosen_for_curves():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    names = [f"eval/{d}/{f}@{k}" for d in ("t2i", "i2t") for f in ("precision", "recall", "mrr", "ndcg") for k in (1, 5, 10, 20)]
    assert curve_metrics(names) == [f"eval/{d}/{f}@10" for d in ("t2i", "i2t") for f in ("recall", "mrr", "ndcg")]
    assert curve_metrics(["eval/pearson", "eval/spearman"]) == ["eval/pearson", "eval/spearman"]
    labeled = [f"eval/{f}@{k}" for f in ("recall", "ndcg") for k in (1, 5)] + ["eval/r_precision", "eval/map@r"]
    assert curve_metrics(labeled) == ["eval/recall@5", "eval/ndcg@5", "eval/map@r"]  # no k = 10 here: the largest shown
