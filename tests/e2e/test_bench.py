"""The benchmark suite keeps working: every bench module runs at quick size, bench/bench_gpu.py runs its CPU smoke path,
the quality benchmarks' readers parse their data, and a missing data folder gives a SKIPPED row, not a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.benches import BENCH, load_bench

ROOT = BENCH.parent
QUALITY = sorted(p.stem for p in BENCH.glob("bench_quality_*.py"))
MODULES = sorted(p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py"))


def _env(**extra: str) -> dict[str, str]:
    # One thread per process: quick figures mean nothing, and on a busy machine two threads per process thrash.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **extra}


def _load(name: str, monkeypatch=None, data_dir: Path | None = None):
    if monkeypatch is not None and data_dir is not None:
        monkeypatch.setenv("FINETUNER_DATA", str(data_dir))
    return load_bench(name)


@pytest.mark.parametrize("name", MODULES)
def test_quick_run_gives_rows_and_no_failure(name, tmp_path):
    """``run.py --quick <name>``: one test per benchmark, so a parallel test run spreads them over its workers."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", name, "--out", str(tmp_path)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("    {")]  # run.py prints each row
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["quick"] is True and report["results"] == printed and printed
    for row in printed:
        assert row.get("benchmark") and "FAILED" not in str(row.get("notes", "")), row
        if not str(row.get("notes", "")).startswith("SKIPPED"):
            assert isinstance(row["ours"], (int, float)) and row["unit"], row
    assert "| benchmark | ours | peer |" in (tmp_path / "results.md").read_text()


def test_run_py_runs_every_bench_module_by_default():
    run = load_bench("run")
    assert run.benchmark_names([]) == MODULES and run.benchmark_names(["text", "vision"]) == ["text", "vision"]


def test_gpu_script_runs_its_cpu_smoke_path():
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_gpu.py"), "--cpu-smoke"],
        cwd=ROOT,
        env=_env(GPU_BENCH_TIMEOUT="900"),  # a busy 2-core CPU is slow; a GPU run keeps the default
        capture_output=True,
        text=True,
        timeout=1000,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # encode and forward vs peers, fit() for both models (the text one also through DDP in a group of one),
    # the loss-check pair, the peak memory of GradCache and of gradient checkpointing, compile vs eager for all four,
    # then LoRA vs full fine-tuning (speed and memory) for all-MiniLM-L6-v2 and CLIP ViT-B/32
    assert [row["unit"] for row in rows] == [
        "sent/s",
        "img/s",
        "pairs/s",
        "pairs/s",
        "img/s",
        "pairs/s",
        "pairs/s",
        "MiB RSS",
        "MiB RSS",
        "sent/s",
        "img/s",
        "pairs/s",
        "img/s",
        "pairs/s",
        "MiB RSS",
        "pairs/s",
        "MiB RSS",
    ]
    assert all(row["ours"] > 0 and "cpu smoke" in row["notes"] for row in rows)
    assert all(row["peer"] > 0 for i, row in enumerate(rows) if i not in (2, 4))  # the two plain fit() rows have no peer
    assert "| benchmark | ours | peer | unit | ratio |" in done.stdout


def test_gpu_script_rejects_unknown_options():
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_gpu.py"), "--fast"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "usage: bench/bench_gpu.py [-h] [--cpu-smoke | --quick]" in done.stderr


@pytest.mark.parametrize("name", QUALITY)
def test_quality_benchmark_without_its_data_returns_a_skipped_row(name, tmp_path, monkeypatch):
    rows = _load(name, monkeypatch, tmp_path / "absent").run(quick=True)
    assert len(rows) == 1 and rows[0]["notes"].startswith("SKIPPED: ") and str(tmp_path / "absent") in rows[0]["notes"]


def test_smart_reader_parses_records_fields_and_qrels(tmp_path):
    cisi = _load("bench_quality_cisi")
    (tmp_path / "docs.all").write_text(
        ".I 1\n.T\nA title\n.A\nAuthor, A.\n.W\n   First line\nsecond  line.\n.X\n1\t5\t1\n"
        ".I 7\n.T Inline title\n.W\nOnly one line.\n"
    )
    records = cisi.read_smart(tmp_path / "docs.all")
    assert records == {
        "1": {"T": "A title", "A": "Author, A.", "W": "First line second line.", "X": "1 5 1"},
        "7": {"T": "Inline title", "W": "Only one line."},
    }
    (tmp_path / "bad.all").write_text(".W\ntext before any record\n")
    with pytest.raises(ValueError, match=r"bad\.all, line 1: field \.W before the first '\.I id'"):
        cisi.read_smart(tmp_path / "bad.all")
    (tmp_path / "q.rel").write_text("     1     28\t0\t0.000000\n 1 35 0 0.0\n\n 2 28 0 0.0\n")
    assert cisi.read_qrels(tmp_path / "q.rel") == {"1": {"28": 1, "35": 1}, "2": {"28": 1}}


def test_cisi_split_is_disjoint_balanced_and_seeded():
    cisi = _load("bench_quality_cisi")
    qrels = {str(q): {"1": 1} for q in range(1, 77)}
    train, test = cisi.split_queries(qrels)
    assert len(train) == len(test) == 38 and not set(train) & set(test) and set(train) | set(test) == set(qrels)
    assert cisi.split_queries(qrels) == (train, test)
    assert cisi.split_queries(qrels, seed=1) != (train, test)


def test_cisi_reader_on_the_real_collection(shared_data, monkeypatch):
    documents, queries, qrels = _load("bench_quality_cisi", monkeypatch, shared_data).read_cisi()
    assert (len(documents), len(queries), len(qrels)) == (1460, 112, 76)
    assert sum(len(judged) for judged in qrels.values()) == 3114
    assert documents["1"].startswith("18 Editions of the Dewey Decimal Classifications. The present study is a history")
    assert set().union(*qrels.values()) <= set(documents) and set(qrels) <= set(queries)


def test_omniglot_and_emoji_splits_hold_out_unseen_items(shared_data, monkeypatch):
    omniglot = _load("bench_quality_omniglot", monkeypatch, shared_data)
    labels = [f"alphabet/character{i:02d}" for i in range(136) for _ in range(3)]
    train, held_out = omniglot.split_classes(labels, 100)
    assert (len(train), len(held_out)) == (100, 36) and not train & held_out
    assert omniglot.split_classes(labels, 100) == (train, held_out)
    emoji = _load("bench_quality_emoji", monkeypatch, shared_data)
    train, test = emoji.split(emoji.read_emoji(), 200)
    assert (len(train), len(test)) == (1212, 200)
    assert not set(train.documents) & set(test.documents)
    assert all(name == name.lower() and image.suffix == ".png" for name, image in zip(test.queries, test.documents, strict=True))
