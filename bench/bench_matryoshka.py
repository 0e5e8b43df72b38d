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

import sys
import time

from benchkit import row, sibling

DIMS = (384, 256, 128, 64)
METRIC = "ndcg@10"
TARGETS = {384: "within 0.005 of the plain model", 64: "clearly above (> 1)"}


def run(quick: bool = False) -> list[dict]:
    """Train plain and Matryoshka models; nDCG@10 of each at every dimension of :data:`DIMS`."""
    bench = sibling("bench_quality_cisi")
    if not all((bench.DATA / name).is_file() for name in ("CISI.ALL", "CISI.QRY", "CISI.REL")):
        return [{"benchmark": "CISI Matryoshka", "notes": f"SKIPPED: {bench.DATA} (CISI.ALL, CISI.QRY, CISI.REL) not found"}]
    import finetuner

    train, test, build, recipe = bench.splits(quick)

    def scores(model) -> dict[int, float]:
        return {d: finetuner.evaluate(model, test, metrics=[METRIC], device="cpu", truncate_dim=d)[METRIC] for d in DIMS}

    zero_shot = scores(finetuner.build_model(bench.MODEL, **build))
    trained, seconds = {}, {}
    for label, extra in (("plain", {}), ("matryoshka", {"matryoshka_dims": DIMS})):
        started = time.perf_counter()
        model = finetuner.fit(
            finetuner.build_model(bench.MODEL, **build),
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
        f"{len(set(train.queries))} train queries ({len(train)} pairs) / {len(test)} test queries against {len(test.corpus)} documents; "
        f"MNRL, {recipe['epochs']} epoch(s), batch {recipe['batch_size']}, lr {recipe['learning_rate']}, seed {recipe['seed']}; "
        f"training {seconds['plain']:.0f} s plain, {seconds['matryoshka']:.0f} s Matryoshka"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    name = "CISI {} at {} dims: Matryoshka-trained vs plain-trained all-MiniLM-L6-v2, both truncated"
    return [
        row(
            name.format(METRIC, dim),
            trained["matryoshka"][dim],
            trained["plain"][dim],
            METRIC,
            TARGETS.get(dim, "none"),
            f"zero-shot at {dim} dims: {zero_shot[dim]:.4f}; {notes}",
            digits=4,
        )
        for dim in DIMS
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv[1:]):
        print(result)
