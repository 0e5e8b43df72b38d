"""Quantized embeddings: codes equal to sentence-transformers', calibration, decoding, and search over codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import finetuner
from finetuner import ArtifactError, OptionError, UnknownNameError
from finetuner.quantize import PRECISIONS, calibrate, dequantize, iter_search, quantize_embeddings, search
from finetuner.truncation import truncate
from tests.core.helpers import topic_pairs


def embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def st_quantize(*args: object, **kwargs: object) -> np.ndarray:
    """sentence-transformers' quantize_embeddings (in ``util`` since 5.x, ``quantization`` before)."""
    try:
        from sentence_transformers.util import quantize_embeddings as peer
    except ImportError:
        from sentence_transformers.quantization import quantize_embeddings as peer
    return peer(*args, **kwargs)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise bit differences of packed uint8 codes, bit by bit."""
    bits_a, bits_b = np.unpackbits(a, axis=1), np.unpackbits(b, axis=1)
    return (bits_a[:, None, :] != bits_b[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("dim", [16, 20, 384])
@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_packing_equals_sentence_transformers(precision: str, dim: int) -> None:
    x = embeddings(50, dim)
    ours, theirs = quantize_embeddings(x, precision), st_quantize(x, precision)
    assert ours.dtype == theirs.dtype and ours.shape == (50, (dim + 7) // 8)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_buckets_equal_sentence_transformers(precision: str) -> None:
    sample, x = embeddings(500, 32, seed=1), embeddings(200, 32, seed=2)
    ranges = calibrate(sample)
    ours = quantize_embeddings(x, precision, ranges)
    assert ours.dtype == np.dtype(precision)
    np.testing.assert_array_equal(ours, st_quantize(x, precision, ranges=ranges))
    np.testing.assert_array_equal(ours, st_quantize(x, precision, calibration_embeddings=sample))
    # without ranges both calibrate on the embeddings themselves
    np.testing.assert_array_equal(quantize_embeddings(x, precision), st_quantize(x, precision))


def test_int8_is_uint8_shifted_and_accepts_tensors() -> None:
    x = embeddings(40, 12)
    ranges = calibrate(x)
    uint8 = quantize_embeddings(torch.from_numpy(x), "uint8", ranges)
    np.testing.assert_array_equal(quantize_embeddings(x, "int8", ranges).astype(np.int16) + 128, uint8)
    assert uint8.min() == 0 and uint8.max() == 255  # the sample's own min and max are the ends


def test_calibrate_gives_min_and_max_per_dimension() -> None:
    x = embeddings(30, 6)
    ranges = calibrate(x)
    assert ranges.shape == (2, 6) and ranges.dtype == np.float32
    np.testing.assert_array_equal(ranges, np.stack([x.min(0), x.max(0)]))
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(x[:1])
    with pytest.raises(ValueError, match="finite"):
        calibrate(np.full((3, 6), np.nan, dtype=np.float32))


def test_errors_name_the_argument_and_valid_values() -> None:
    x = embeddings(10, 8)
    with pytest.raises(UnknownNameError, match="precision 'int4'.*Valid: binary, int8, ubinary, uint8"):
        quantize_embeddings(x, "int4")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 8\)"):
        quantize_embeddings(x, "int8", np.zeros((2, 7)))
    with pytest.raises(ValueError, match="min.*max"):
        quantize_embeddings(x, "int8", np.stack([np.ones(8), np.zeros(8)]))
    with pytest.raises(ValueError, match="ranges apply to int8 and uint8 only"):
        quantize_embeddings(x, "binary", calibrate(x))
    with pytest.raises(ValueError, match="float embeddings"):
        quantize_embeddings(quantize_embeddings(x, "uint8"), "uint8")
    with pytest.raises(ValueError, match="2-D"):
        quantize_embeddings(x[0], "binary")


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_dequantize_scalar_is_within_half_a_bucket(precision: str) -> None:
    x = embeddings(100, 16)
    ranges = calibrate(x)
    decoded = dequantize(quantize_embeddings(x, precision, ranges), precision, dim=16, ranges=ranges)
    step = (ranges[1] - ranges[0]) / 255
    assert np.all(np.abs(decoded - x) <= step / 2 + 1e-6)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_dequantize_binary_gives_signs(precision: str) -> None:
    x = embeddings(10, 13)
    np.testing.assert_array_equal(dequantize(quantize_embeddings(x, precision), precision, dim=13), np.where(x > 0, 1, -1))


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_search_ranks_by_hamming_distance(precision: str) -> None:
    dim = 20
    queries, corpus = embeddings(7, dim, seed=3), embeddings(60, dim, seed=4)
    codes = quantize_embeddings(corpus, precision)
    scores, indices = search(queries, codes, 10, precision=precision)
    distance = hamming(quantize_embeddings(queries, "ubinary"), quantize_embeddings(corpus, "ubinary"))
    expected = np.argsort(distance, axis=1, kind="stable")[:, :10]  # ties by corpus position
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, dim - 2 * np.take_along_axis(distance, expected, 1))


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_search_ranks_by_integer_dot_product(precision: str) -> None:
    queries, corpus = embeddings(5, 32, seed=5), embeddings(80, 32, seed=6)
    ranges = calibrate(corpus)
    codes = quantize_embeddings(corpus, precision, ranges)
    scores, indices = search(queries, codes, 8, precision=precision, ranges=ranges)
    signed = quantize_embeddings(queries, "int8", ranges).astype(np.int64)
    dots = signed @ quantize_embeddings(corpus, "int8", ranges).astype(np.int64).T
    expected = np.argsort(-dots, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(dots, expected, 1))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_rescore_reranks_the_top_n_with_float_queries(precision: str) -> None:
    queries, corpus = embeddings(6, 24, seed=7), embeddings(50, 24, seed=8)
    ranges = calibrate(corpus) if precision in ("int8", "uint8") else None
    codes = quantize_embeddings(corpus, precision, ranges)
    _, first = search(queries, codes, 20, precision=precision, ranges=ranges)
    scores, indices = search(queries, codes, 20, precision=precision, ranges=ranges, rescore=5)
    decoded = dequantize(codes, precision, dim=24, ranges=ranges)
    exact = queries @ decoded.T
    # the first 5 are the first stage's top 5 re-ranked by the float query; the rest keep their order
    for q in range(len(queries)):
        top = first[q, :5]
        np.testing.assert_array_equal(indices[q, :5], top[np.argsort(-exact[q, top], kind="stable")])
        np.testing.assert_allclose(scores[q, :5], exact[q, indices[q, :5]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(indices[:, 5:], first[:, 5:])
    # rescoring everything is the float query against the decoded corpus
    _, full = search(queries, codes, 3, precision=precision, ranges=ranges, rescore=50)
    np.testing.assert_array_equal(full, np.argsort(-exact, axis=1, kind="stable")[:, :3])


def test_rescored_int8_search_finds_the_float_neighbours() -> None:
    corpus = embeddings(400, 64, seed=9)
    queries = corpus[:40] + 0.05 * embeddings(40, 64, seed=10)
    for precision, ranges, rescore in (("int8", calibrate(corpus), None), ("binary", None, 50)):
        codes = quantize_embeddings(corpus, precision, ranges)
        _, indices = search(queries, codes, 1, precision=precision, ranges=ranges, rescore=rescore)
        np.testing.assert_array_equal(indices[:, 0], np.arange(40))


def test_iter_search_chunks_excludes_and_per_query_k() -> None:
    corpus = embeddings(30, 16, seed=11)
    codes = quantize_embeddings(corpus, "ubinary")
    chunks = list(iter_search(corpus, codes, np.array([3, 5] * 15), precision="ubinary", exclude=np.arange(30), chunk_size=4))
    assert len(chunks) == 8
    indices = np.concatenate([c[2][:, :3] for c in chunks])
    assert not (indices == np.arange(30)[:, None]).any()
    assert max(c[2].shape[1] for c in chunks) == 5


def test_search_errors() -> None:
    x = embeddings(10, 16)
    codes = quantize_embeddings(x, "int8", calibrate(x))
    with pytest.raises(ValueError, match="ranges="):
        search(x, codes, 3, precision="int8")
    with pytest.raises(ValueError, match=r"corpus must be binary codes of 16-dim embeddings, \[N, 2\]"):
        search(x, codes, 3, precision="binary")
    with pytest.raises(ValueError, match="rescore must be a positive"):
        search(x, codes, 3, precision="int8", ranges=calibrate(x), rescore=0)
    with pytest.raises(UnknownNameError, match="precision"):
        search(x, codes, 3, precision="float16")


# --- calibrate(model), encode(quantize=), evaluate(quantize=, rescore=), the artifact, the CLI ---------------------


@pytest.fixture
def tuned():
    model = finetuner.build_model("dummy-text", pretrained=False)
    model.matryoshka_dims = (16, 8)
    return finetuner.calibrate(model, [q for q, _ in topic_pairs(40)], dims=[4])


def test_calibrate_keeps_ranges_per_dim_and_encode_quantizes_with_them(tuned, tmp_path) -> None:
    assert sorted(tuned.quantization_ranges) == [4, 8, 16]
    texts = [d for _, d in topic_pairs(6, seed=1)]
    floats = finetuner.encode(tuned, texts)
    for dim in (16, 4):
        ranges = tuned.quantization_ranges[dim]
        expected = quantize_embeddings(truncate(floats, dim), "int8", ranges)
        truncate_dim = None if dim == 16 else dim
        np.testing.assert_array_equal(finetuner.encode(tuned, texts, quantize="int8", truncate_dim=truncate_dim), expected)
    finetuner.save(tuned, tmp_path / "m")
    loaded = finetuner.load(tmp_path / "m")
    assert sorted(loaded.quantization_ranges) == [4, 8, 16]
    for dim, ranges in tuned.quantization_ranges.items():
        np.testing.assert_array_equal(loaded.quantization_ranges[dim], ranges)
    np.testing.assert_array_equal(
        finetuner.encode(tmp_path / "m", texts, quantize="uint8"), finetuner.encode(tuned, texts, quantize="uint8")
    )
    assert finetuner.encode(loaded, texts, quantize="ubinary", truncate_dim=12).shape == (6, 2)


def test_encode_quantize_errors_name_the_option() -> None:
    model = finetuner.build_model("dummy-text", pretrained=False)
    with pytest.raises(UnknownNameError, match="unknown quantize 'int4'.*Valid: binary, int8, ubinary, uint8"):
        finetuner.encode(model, ["a"], quantize="int4")
    with pytest.raises(OptionError, match=r"quantize='int8' needs the model's ranges at 16 dims.*finetuner.calibrate"):
        finetuner.encode(model, ["a"], quantize="int8")
    assert finetuner.encode(model, ["a", "b"], quantize="binary").shape == (2, 2)


def test_evaluate_quantized_search_is_the_search_over_encoded_codes(tuned) -> None:
    data = topic_pairs(30, seed=2)
    queries, documents = [q for q, _ in data], [d for _, d in data]
    q, d = finetuner.encode(tuned, queries), finetuner.encode(tuned, documents)
    for precision, rescore in (("int8", None), ("binary", None), ("binary", 5)):
        ranges = tuned.quantization_ranges[16] if precision == "int8" else None
        _, top = search(q, quantize_embeddings(d, precision, ranges), 1, precision=precision, ranges=ranges, rescore=rescore)
        measured = finetuner.evaluate(tuned, data, metrics=["hit_rate@1"], quantize=precision, rescore=rescore)
        assert measured["hit_rate@1"] == pytest.approx(np.mean(top[:, 0] == np.arange(30)))


def test_evaluate_quantize_options_are_checked(tuned) -> None:
    data = topic_pairs(10)
    with pytest.raises(OptionError, match="rescore= re-ranks a quantized search"):
        finetuner.evaluate(tuned, data, rescore=5)
    with pytest.raises(UnknownNameError, match="quantize"):
        finetuner.evaluate(tuned, data, quantize="fp8")
    with pytest.raises(OptionError, match="rescore must be a positive"):
        finetuner.evaluate(tuned, data, quantize="binary", rescore=0)
    scored = [(f"w{i} a", f"w{i} b", float(i % 3)) for i in range(10)]
    with pytest.raises(OptionError, match="scored data"):
        finetuner.evaluate(tuned, scored, quantize="binary")


def test_an_artifact_with_bad_ranges_is_refused(tuned, tmp_path) -> None:
    finetuner.save(tuned, tmp_path / "m")
    path = tmp_path / "m" / "finetuner.json"
    config = json.loads(path.read_text())
    config["quantization_ranges"]["8"] = [[0.0] * 7, [1.0] * 7]
    path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"ranges must have shape \(2, 8\)"):
        finetuner.load(tmp_path / "m")


def test_cli_calibrate_writes_the_ranges_into_the_artifact(tmp_path, capsys) -> None:
    from finetuner.cli import main

    finetuner.save(finetuner.build_model("dummy-text", pretrained=False), tmp_path / "m")
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    (tmp_path / "sample.txt").write_text("\n".join(q for q, _ in topic_pairs(20)))
    assert main(["calibrate", str(tmp_path / "m"), str(tmp_path / "sample.txt"), "--dims", "8"]) == 0
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == weights
    assert sorted(finetuner.load(tmp_path / "m").quantization_ranges) == [8, 16]
    out = tmp_path / "codes.npy"
    assert main(["encode", str(tmp_path / "m"), str(tmp_path / "sample.txt"), "-o", str(out), "--quantize", "int8"]) == 0
    assert np.load(out).dtype == np.int8 and np.load(out).shape == (20, 16)
    capsys.readouterr()
    csv = tmp_path / "pairs.csv"
    csv.write_text("query,document\n" + "".join(f"{q},{d}\n" for q, d in topic_pairs(20)))
    args = ["evaluate", str(tmp_path / "m"), str(csv), "--dims", "16,8", "--quantize", "int8", "--rescore", "5", "--json"]
    assert main(args) == 0
    by_dim = json.loads(capsys.readouterr().out)
    assert list(by_dim) == ["16", "8"] and "ndcg@10" in by_dim["8"]
