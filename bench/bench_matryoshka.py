"""Matryoshka training on CISI: nDCG@10 at 384/256/128/64 dimensions, against the same training without it.

bench_quality_cisi.py's split and recipe (all-MiniLM-L6-v2, MultipleNegativesRankingLoss, 2 epochs,
batch 16, lr 2e-5, seed 0, texts cut to 128 tokens) train two models: one plain, one with
``matryoshka_dims=(384, 256, 128, 64)``. Each is scored with ``finetuner.evaluate(...,
truncate_dim=d)`` (embeddings cut to their first d dimensions and re-normalised) on the test
queries against the whole corpus. Targets (issue 20): at 64 dimensions clearly above the plain
model's truncation; at 384 within 0.005 of it.

    python bench/bench_matryoshka.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DIMS = (384, 256, 128, 64)
METRIC = "ndcg@10"
TARGETS = {384: "within 0.005 of the plain model", 64: "clearly above (> 1)"}


def cisi():
    """The sibling benchmark's CISI module (readers, split, recipe, quick sizes)."""
    spec = importlib.util.spec_from_file_location("bench_quality_cisi", HERE / "bench_quality_cisi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(quick: bool = False) -> list[dict]:
    """Train plain and Matryoshka models; nDCG@10 of each at every dimension of :data:`DIMS`."""
    bench = cisi()
    if not all((bench.DATA / name).is_file() for name in ("CISI.ALL", "CISI.QRY", "CISI.REL")):
        return [{"benchmark": "CISI Matryoshka", "notes": f"SKIPPED: {bench.DATA} (CISI.ALL, CISI.QRY, CISI.REL) not found"}]
    import finetuner
    from finetuner.data import PairData, RetrievalData

    documents, queries, qrels = bench.read_cisi()
    train_ids, test_ids = bench.split_queries(qrels)
    recipe, max_length, per_query = dict(bench.RECIPE), bench.MAX_LENGTH, None
    if quick:
        train_ids, test_ids = train_ids[: bench.QUICK["queries"]], test_ids[: bench.QUICK["queries"]]
        recipe["batch_size"], max_length, per_query = (
            bench.QUICK["batch_size"],
            bench.QUICK["max_length"],
            bench.QUICK["pairs_per_query"],
        )
        wanted = {d for q in test_ids for d in qrels[q]} | set(list(documents)[: bench.QUICK["corpus"]])
        documents = {d: text for d, text in documents.items() if d in wanted}
    pairs = [(queries[q], documents[d]) for q in train_ids for d in sorted(qrels[q], key=int)[:per_query] if d in documents]
    train = PairData([q for q, _ in pairs], [d for _, d in pairs], source="CISI train queries")
    test = RetrievalData(
        {q: queries[q] for q in test_ids}, documents, {q: qrels[q] for q in test_ids}, source="CISI test queries"
    )

    def scores(model) -> dict[int, float]:
        return {d: finetuner.evaluate(model, test, metrics=[METRIC], device="cpu", truncate_dim=d)[METRIC] for d in DIMS}

    zero_shot = scores(finetuner.build_model(bench.MODEL, max_length=max_length))
    trained, seconds = {}, {}
    for label, extra in (("plain", {}), ("matryoshka", {"matryoshka_dims": DIMS})):
        started = time.perf_counter()
        model = finetuner.fit(
            finetuner.build_model(bench.MODEL, max_length=max_length),
            train,
            output_dir=None,
            device="cpu",
            verbose=False,
            **recipe,
            **extra,
        )
        seconds[label] = time.perf_counter() - started
        trained[label] = scores(model)
    notes = (
        f"{len(train_ids)} train queries ({len(train)} pairs) / {len(test_ids)} test queries against {len(documents)} documents; "
        f"MNRL, {recipe['epochs']} epoch(s), batch {recipe['batch_size']}, lr {recipe['learning_rate']}, seed {recipe['seed']}; "
        f"training {seconds['plain']:.0f} s plain, {seconds['matryoshka']:.0f} s Matryoshka"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    return [
        {
            "benchmark": f"CISI {METRIC} at {dim} dims: Matryoshka-trained vs plain-trained all-MiniLM-L6-v2, both truncated",
            "ours": round(trained["matryoshka"][dim], 4),
            "peer": round(trained["plain"][dim], 4),
            "unit": METRIC,
            "ratio": round(trained["matryoshka"][dim] / trained["plain"][dim], 3) if trained["plain"][dim] else None,
            "target": TARGETS.get(dim, "none"),
            "notes": f"zero-shot at {dim} dims: {zero_shot[dim]:.4f}; {notes}",
        }
        for dim in DIMS
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
