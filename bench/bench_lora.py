"""LoRA against full fine-tuning of all-MiniLM-L6-v2 on CISI and STSb: parameters, artifact, memory, speed, quality.

Both ways train with the recipes the quality benchmarks use, with the same seeds (:data:`SEEDS`):
bench_quality_cisi.py's (its split; MultipleNegativesRankingLoss, 2 epochs, batch 16, texts cut
to 128 tokens, precision auto; nDCG@10 on the test queries against the whole corpus) and
bench_quality_stsb.py's (CoSENTLoss, 1 epoch, batch 16, fp32; Spearman on the dev pairs). Full
fine-tuning keeps the recipes' learning rate (2e-5); LoRA (``lora=True``: r 16, alpha 32, no
dropout, on query, key, value and the dense layers) trains at fit's default with lora (1e-3, as
adapters start at zero) on STSb and at :data:`LORA_LEARNING_RATE` on CISI, where 1e-3 is unstable
across seeds (bench/README.md has the probe). Each run is a process of its own, so its peak RSS (``ru_maxrss``, read
when training ends, before the evaluation) is its own; pairs/s is training pairs over the wall
time of ``fit`` (artifact written included). Rows per data set: trainable parameters, artifact
size, peak RSS, pairs/s and quality (mean over the seeds; the notes give each seed and the spread).
Targets (issue 20): quality within 0.01 of full fine-tuning, artifact at most 5 % of its size,
peak memory lower.

    python bench/bench_lora.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import MINILM as MODEL
from benchkit import sibling

SEEDS = (0, 1, 2)
WAYS = ("lora", "full")
DATASETS = ("cisi", "stsb")
QUALITY = {"cisi": "ndcg@10", "stsb": "spearman"}
FILES = {"cisi": ("CISI.ALL", "CISI.QRY", "CISI.REL"), "stsb": ("train.csv", "dev.csv")}
LORA_LEARNING_RATE = {"cisi": 5e-4}  # data sets where LoRA does not train at fit's default (1e-3)


def task(dataset: str, quick: bool) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """(training data, evaluation data, build options, fit options) of a data set's recipe."""
    if dataset == "cisi":
        return sibling("bench_quality_cisi").splits(quick)
    stsb = sibling("bench_quality_stsb")
    train_limit, dev_limit = stsb.QUICK_SIZES if quick else (None, None)
    recipe = {**stsb.RECIPE, "loss": "CoSENTLoss", "precision": "fp32"}
    return stsb.read_split("train", train_limit), stsb.read_split("dev", dev_limit), {}, recipe


def train_once(dataset: str, way: str, seed: int, quick: bool) -> dict[str, Any]:
    """One training run in this process: its figures (what :func:`run` reads from the child's last line)."""
    import finetuner
    from finetuner.lora import LEARNING_RATE

    train, test, build, recipe = task(dataset, quick)
    options = {**recipe, "seed": seed, "device": "cpu", "verbose": False}
    if way == "lora":
        options["learning_rate"] = LORA_LEARNING_RATE.get(dataset, LEARNING_RATE)  # fit's default with lora, or the data set's
        options["lora"] = True
    with tempfile.TemporaryDirectory() as out:
        model = finetuner.build_model(MODEL, **build)
        started = time.perf_counter()
        model = finetuner.fit(model, train, output_dir=out, **options)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        files = [f for f in (Path(out) / "model").rglob("*") if f.is_file() and not f.name.startswith("report.")]
        artifact = sum(f.stat().st_size for f in files)
    metric = QUALITY[dataset]
    quality = finetuner.evaluate(model, test, metrics=[metric], device="cpu", precision="fp32")[metric]
    return {
        "quality": quality,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "artifact_mb": artifact / 2**20,
        "peak_rss_mb": peak_mb,
        "pairs_per_s": len(train) * recipe["epochs"] / seconds,
        "learning_rate": options["learning_rate"],
    }


def _child(dataset: str, way: str, seed: int, quick: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", dataset, way, str(seed), *(["--quick"] if quick else [])]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{dataset} {way} seed {seed} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(dataset: str, runs: dict[str, list[dict[str, Any]]], seeds: tuple[int, ...], quick: bool) -> list[dict]:
    def mean(way: str, key: str) -> float:
        return sum(r[key] for r in runs[way]) / len(runs[way])

    metric = QUALITY[dataset]
    spread = {way: max(r["quality"] for r in runs[way]) - min(r["quality"] for r in runs[way]) for way in WAYS}
    per_seed = "; ".join(
        f"seed {seed}: LoRA {lora['quality']:.4f}, full {full['quality']:.4f}"
        for seed, lora, full in zip(seeds, runs["lora"], runs["full"], strict=True)
    )
    notes = (
        f"lr LoRA {runs['lora'][0]['learning_rate']:g}, full {runs['full'][0]['learning_rate']:g}; {len(seeds)} seed(s), means"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    figures = [
        ("trainable parameters", "trainable", "parameters", "-"),
        ("artifact size (no report PNG)", "artifact_mb", "MB", "<= 0.05"),
        ("peak RSS of the training process", "peak_rss_mb", "MB", "< 1"),
        ("training speed", "pairs_per_s", "pairs/s", "-"),
    ]
    rows = [
        {
            "benchmark": f"{dataset.upper()} {label}: LoRA vs full fine-tuning of {MODEL}",
            "ours": round(mean("lora", key), 3 if key != "trainable" else None),
            "peer": round(mean("full", key), 3 if key != "trainable" else None),
            "unit": unit,
            "ratio": round(mean("lora", key) / mean("full", key), 4),
            "target": target,
            "notes": notes,
        }
        for label, key, unit, target in figures
    ]
    rows.append(
        {
            "benchmark": f"{dataset.upper()} {metric}: LoRA vs full fine-tuning of {MODEL}",
            "ours": round(mean("lora", "quality"), 4),
            "peer": round(mean("full", "quality"), 4),
            "unit": metric,
            "ratio": round(mean("lora", "quality") / mean("full", "quality"), 4),
            "target": "within 0.01 of full",
            "notes": f"{notes}; spread (max - min over seeds): LoRA {spread['lora']:.4f}, full {spread['full']:.4f}; {per_seed}",
        }
    )
    return rows


def run(quick: bool = False) -> list[dict]:
    """Every data set, both ways, every seed; rows as bench/run.py records them.

    Quick: one seed, tiny data, every run in this process (its peak RSS is then the largest so far).
    """
    seeds = SEEDS[:1] if quick else SEEDS
    rows: list[dict] = []
    for dataset in DATASETS:
        module = sibling(f"bench_quality_{dataset}")
        if not all((module.DATA / name).is_file() for name in FILES[dataset]):
            rows.append(
                {"benchmark": f"{dataset.upper()} LoRA vs full fine-tuning", "notes": f"SKIPPED: {module.DATA} not found"}
            )
            continue
        once = train_once if quick else _child
        runs = {way: [once(dataset, way, seed, quick) for seed in seeds] for way in WAYS}
        rows.extend(_rows(dataset, runs, seeds, quick))
    return rows


if __name__ == "__main__":
    arguments = sys.argv[1:]
    quick = "--quick" in arguments
    if "--child" in arguments:
        dataset, way, seed = arguments[arguments.index("--child") + 1 : arguments.index("--child") + 4]
        print(json.dumps(train_once(dataset, way, int(seed), quick)))
    else:
        for row in run(quick=quick):
            print(row)
