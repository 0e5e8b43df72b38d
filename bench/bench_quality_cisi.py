"""Quality on CISI retrieval: all-MiniLM-L6-v2 zero-shot vs fine-tuned on half of the judged queries.

CISI (``../shared/data/cisi``, SMART format): 1,460 library-science abstracts, 112 queries of
which 76 have relevance judgments. The judged queries are split 50/50 with a fixed seed; the
model is fine-tuned (MultipleNegativesRankingLoss) on the (query, relevant document) pairs of
the training half and both models are scored with ``finetuner.evaluate`` on the other half,
each query against the whole corpus: nDCG@10, MAP@100 and Recall@100. Texts are cut to 128
tokens (most abstracts fit in 256, but 128 makes the run about 3 times cheaper).

    python bench/bench_quality_cisi.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import random
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import MINILM as MODEL
from benchkit import data_root, row

DATA = data_root() / "cisi"
SEED = 0
RECIPE = {"epochs": 2, "batch_size": 16, "learning_rate": 2e-5, "loss": "MultipleNegativesRankingLoss", "seed": SEED}
METRICS = ("ndcg@10", "map@100", "recall@100")
MARKER = re.compile(r"^\.([A-Z])(?:\s+(.*))?$")
MAX_LENGTH = 128  # tokens per text
QUICK = {"queries": 8, "pairs_per_query": 4, "batch_size": 8, "corpus": 40, "max_length": 64}


def read_smart(path: Path) -> dict[str, dict[str, str]]:
    """A SMART file (``.I id`` starts a record, ``.T``/``.A``/``.W``/``.X``/``.B`` start its fields) as {id: {field: text}}.

    Whitespace in a field's text is collapsed to single spaces.
    """
    records: dict[str, dict[str, list[str]]] = {}
    fields: dict[str, list[str]] | None = None
    field = None
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        marker = MARKER.match(line)
        if marker is None:
            if field is not None:
                fields[field].append(line)
            continue
        tag, rest = marker.group(1), (marker.group(2) or "").strip()
        if tag == "I":
            if not rest:
                raise ValueError(f"{path}, line {number}: '.I' without an id")
            fields, field = records.setdefault(rest, {}), None
        elif fields is None:
            raise ValueError(f"{path}, line {number}: field .{tag} before the first '.I id'")
        else:
            field = tag
            fields.setdefault(field, []).append(rest)
    return {rid: {f: " ".join(" ".join(lines).split()) for f, lines in fs.items()} for rid, fs in records.items()}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``CISI.REL`` lines ``qid docid 0 0.0`` as {qid: {docid: 1}}."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}, line {number}: expected 'query_id doc_id ...', got {line!r}")
        qrels.setdefault(parts[0], {})[parts[1]] = 1
    return qrels


def read_cisi(directory: Path = DATA) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(documents, queries, qrels): documents are title + abstract, queries their ``.W`` text."""
    documents = {i: f"{r.get('T', '')}. {r.get('W', '')}".strip(". ") for i, r in read_smart(directory / "CISI.ALL").items()}
    queries = {i: r.get("W", "") for i, r in read_smart(directory / "CISI.QRY").items()}
    return documents, queries, read_qrels(directory / "CISI.REL")


def split_queries(qrels: dict[str, dict[str, int]], seed: int = SEED) -> tuple[list[str], list[str]]:
    """The judged query ids, shuffled with ``seed`` and cut in two halves (train, test)."""
    judged = sorted(qrels, key=int)
    random.Random(seed).shuffle(judged)
    half = len(judged) // 2
    return sorted(judged[:half], key=int), sorted(judged[half:], key=int)


def quick_cut(
    documents: dict[str, str], qrels: dict[str, dict[str, int]], query_ids: list[str], per_query: int, extra: int
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Quick sizes: the first ``per_query`` relevant documents of each of ``query_ids`` and the first ``extra`` of the
    collection, and those queries' judgments within them."""
    wanted = {d for q in query_ids for d in sorted(qrels[q], key=int)[:per_query]} | set(list(documents)[:extra])
    kept = {d: text for d, text in documents.items() if d in wanted}
    return kept, {q: {d: g for d, g in qrels[q].items() if d in kept} for q in query_ids}


def available() -> bool:
    return all((DATA / name).is_file() for name in ("CISI.ALL", "CISI.QRY", "CISI.REL"))


def splits(quick: bool = False) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The training pairs, the test queries against the corpus, and the build options and recipe (quick: tiny sizes)."""
    from finetuner.data import PairData, RetrievalData

    documents, queries, qrels = read_cisi()
    train_ids, test_ids = split_queries(qrels)
    build, recipe, per_query = {"max_length": MAX_LENGTH}, dict(RECIPE), None
    if quick:
        train_ids, test_ids = train_ids[: QUICK["queries"]], test_ids[: QUICK["queries"]]
        build, recipe["batch_size"], per_query = (
            {"max_length": QUICK["max_length"]},
            QUICK["batch_size"],
            QUICK["pairs_per_query"],
        )
    pairs = [(queries[q], documents[d]) for q in train_ids for d in sorted(qrels[q], key=int)[:per_query]]
    if quick:
        documents, qrels = quick_cut(documents, qrels, test_ids, per_query, QUICK["corpus"])
    train = PairData([q for q, _ in pairs], [d for _, d in pairs], source="CISI train queries")
    test = RetrievalData(
        {q: queries[q] for q in test_ids}, documents, {q: qrels[q] for q in test_ids}, source="CISI test queries"
    )
    return train, test, build, recipe


def run(quick: bool = False) -> list[dict]:
    """Fine-tune on the training queries; nDCG@10, MAP@100 and Recall@100 on the test queries, before and after."""
    if not available():
        return [{"benchmark": "CISI retrieval quality", "notes": f"SKIPPED: {DATA} (CISI.ALL, CISI.QRY, CISI.REL) not found"}]
    import finetuner

    train, test, build, recipe = splits(quick)

    def score(model) -> dict[str, float]:
        return finetuner.evaluate(model, test, metrics=list(METRICS), device="cpu")

    before = score(finetuner.build_model(MODEL, **build))
    started = time.perf_counter()
    tuned = finetuner.fit(finetuner.build_model(MODEL, **build), train, output_dir=None, device="cpu", verbose=False, **recipe)
    seconds = time.perf_counter() - started
    after = score(tuned)
    notes = (
        f"{len(set(train.queries))} train queries ({len(train)} pairs) / {len(test)} test queries against {len(test.corpus)} documents; "
        f"MNRL, {recipe['epochs']} epoch(s), batch {recipe['batch_size']}, lr {recipe['learning_rate']}, precision auto, "
        f"seed {SEED}; training {seconds:.0f} s"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    name = "CISI {}: fine-tuned vs zero-shot all-MiniLM-L6-v2"
    return [row(name.format(metric), after[metric], before[metric], metric, "> 1.0", notes, digits=4) for metric in METRICS]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv[1:]):
        print(result)
