"""Quantized embeddings on CISI retrieval: memory per vector and nDCG@10, finetuner vs sentence-transformers.

all-MiniLM-L6-v2 (zero-shot, texts cut to 128 tokens) embeds CISI's 1,460 documents and its
76 judged queries once; every row scores those same float32 embeddings, each query against
the whole corpus. Settings: float32 (exact search), int8 (ranges calibrated on the corpus),
binary (hamming), and binary and int8 rescored: the top 100 of the quantized search re-ranked
with the float32 query.

The peer is sentence-transformers' ``quantize_embeddings`` on the same embeddings with the
same calibration, searched as its ``semantic_search_faiss``/``semantic_search_usearch`` do
(faiss and usearch are not installed, so that search is written out here in numpy: hamming
distance on ubinary codes, the inner product of int8 codes, and rescoring with the float32
query against the candidates' unpacked bits or codes mapped back with its bucket lower edges).

    python bench/bench_quantize.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import sys
import time

from benchkit import sibling

MODEL = "all-MiniLM-L6-v2"
MAX_LENGTH = 128
RESCORE = 100
K = 10
QUICK = {"queries": 8, "judged_per_query": 4, "corpus": 40, "max_length": 64}
SETTINGS = (  # label, precision, rescore
    ("float32", None, None),
    ("int8", "int8", None),
    ("int8 rescored top 100", "int8", RESCORE),
    ("binary", "binary", None),
    ("binary rescored top 100", "binary", RESCORE),
)


def ndcg(ranked, qrels: list[dict[int, float]], corpus_size: int) -> float:
    """Mean nDCG@K of ranked corpus positions ``[Q, >= K]`` against each query's {position: grade}."""
    import numpy as np

    from finetuner.evaluation.metrics import Judgments, ndcg_at_k

    judgments = Judgments(qrels, corpus_size)
    queries = np.arange(len(qrels))
    return float(ndcg_at_k(judgments.relevance(queries, ranked[:, :K]), judgments.ideal(queries, K), K).mean())


def peer_search(queries, corpus, precision: str | None, rescore: int | None, ranges):
    """sentence-transformers' codes, ranked as its faiss/usearch search does; ``[Q, K]`` corpus positions."""
    import numpy as np

    try:  # in util since sentence-transformers 5, in quantization before
        from sentence_transformers.util import quantize_embeddings
    except ImportError:
        from sentence_transformers.quantization import quantize_embeddings

    if precision is None:
        return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :K]
    if precision == "binary":
        q_codes, c_codes = quantize_embeddings(queries, "ubinary"), quantize_embeddings(corpus, "ubinary")
        first = np.bitwise_count(q_codes[:, None, :] ^ c_codes[None, :, :]).sum(axis=2)  # hamming, lower is better
    else:
        q_codes = quantize_embeddings(queries, "int8", ranges=ranges).astype(np.int32)
        c_codes = quantize_embeddings(corpus, "int8", ranges=ranges)
        first = -(q_codes @ c_codes.astype(np.int32).T)
    top = np.argsort(first, axis=1, kind="stable")[:, : max(K, rescore or 0)]
    if not rescore:
        return top
    if precision == "binary":
        candidates = np.unpackbits(c_codes[top], axis=-1)[..., : queries.shape[1]].astype(np.float32)
    else:
        steps = np.where(ranges[1] == ranges[0], 1, (ranges[1] - ranges[0]) / 255)
        candidates = (c_codes[top].astype(np.float64) + 128) * steps + ranges[0]
    exact = np.einsum("qd,qnd->qn", queries, candidates)
    return np.take_along_axis(top, np.argsort(-exact, axis=1, kind="stable"), 1)[:, :K]


def run(quick: bool = False) -> list[dict]:
    """nDCG@10 and bytes per vector for each setting of :data:`SETTINGS`, ours and the peer's."""
    bench = sibling("bench_quality_cisi")
    if not all((bench.DATA / name).is_file() for name in ("CISI.ALL", "CISI.QRY", "CISI.REL")):
        return [
            {"benchmark": "CISI quantized retrieval", "notes": f"SKIPPED: {bench.DATA} (CISI.ALL, CISI.QRY, CISI.REL) not found"}
        ]
    import numpy as np

    import finetuner
    from finetuner.quantize import calibrate, quantize_embeddings, search

    documents, queries, qrels = bench.read_cisi()
    query_ids = sorted(qrels, key=int)
    if quick:
        query_ids = query_ids[: QUICK["queries"]]
        documents, qrels = bench.quick_cut(documents, qrels, query_ids, QUICK["judged_per_query"], QUICK["corpus"])
    doc_ids = list(documents)
    position = {d: i for i, d in enumerate(doc_ids)}
    judged = [{position[d]: g for d, g in qrels[q].items() if d in position} for q in query_ids]
    model = finetuner.build_model(MODEL, max_length=QUICK["max_length"] if quick else MAX_LENGTH)
    started = time.perf_counter()
    corpus = finetuner.encode(model, [documents[d] for d in doc_ids], device="cpu")
    query_embeddings = finetuner.encode(model, [queries[q] for q in query_ids], device="cpu")
    encode_seconds = time.perf_counter() - started
    ranges = calibrate(corpus)
    rows = []
    float_ndcg = None
    for label, precision, rescore in SETTINGS:
        if precision is None:
            codes, ours = corpus, np.argsort(-(query_embeddings @ corpus.T), axis=1, kind="stable")[:, :K]
        else:
            setting_ranges = ranges if precision == "int8" else None
            codes = quantize_embeddings(corpus, precision, setting_ranges)
            ours = search(query_embeddings, codes, K, precision=precision, ranges=setting_ranges, rescore=rescore)[1]
        ours_ndcg = ndcg(ours, judged, len(doc_ids))
        peer_ndcg = ndcg(peer_search(query_embeddings, corpus, precision, rescore, ranges), judged, len(doc_ids))
        float_ndcg = ours_ndcg if float_ndcg is None else float_ndcg
        size = codes.nbytes // len(codes)
        notes = (
            f"{size} bytes per vector ({corpus.nbytes // len(corpus) // size}x smaller than float32); "
            f"{ours_ndcg / float_ndcg:.1%} of float32's nDCG@10; {len(query_ids)} queries x {len(doc_ids)} documents, "
            f"encoded once in {encode_seconds:.0f} s"
        )
        if quick:
            notes += " (quick: figures mean nothing)"
        rows.append(
            {
                "benchmark": f"CISI nDCG@10, {label}: finetuner vs sentence-transformers quantize_embeddings",
                "ours": round(ours_ndcg, 4),
                "peer": round(peer_ndcg, 4),
                "unit": "ndcg@10",
                "ratio": round(ours_ndcg / peer_ndcg, 3) if peer_ndcg else None,
                "target": ">= 1.0",
                "notes": notes,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
