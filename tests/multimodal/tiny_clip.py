"""A tiny random CLIP with a real (small) BPE tokenizer, saved in the layout of a hub repo.

Everything but the projection dimension is tiny: 2-layer 32-wide encoders, 32x32 images in
8x8 patches, a ~520-token vocabulary. ``projection_dim`` is 512, so the registered dim holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.hubcache import hub_snapshot

REPO_ID = "openai/clip-vit-base-patch32"
IMAGE_SIZE = 32
LOGIT_SCALE = 3.0  # not CLIP's default init, so a test can see it travel with the model
WORDS = ("a", "photo", "of", "cat", "dog", "red", "car")


def write_tokenizer_files(directory: Path) -> tuple[int, int, int]:
    """vocab.json and merges.txt of a byte-level BPE in CLIP's format; returns (vocab size, bos id, eos id).

    As in CLIP, the vocabulary is every byte symbol alone and at a word end (``</w>``), then the
    merged symbols, then ``<|startoftext|>`` and ``<|endoftext|>`` last.
    """
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate([*symbols, *(s + "</w>" for s in symbols)])}
    merges: list[str] = []
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            if merged not in vocab:
                merges.append(f"{parts[0]} {parts[1]}")
                vocab[merged] = len(vocab)
            parts = [merged, *parts[2:]]
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab), bos, eos


def write_tiny_clip(hf_home: Path, repo_id: str = REPO_ID, *, weights: bool = True) -> Path:
    """Save a tiny random CLIP (weights optional), its tokenizer and image config as ``repo_id``; returns the snapshot."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    snapshot = hub_snapshot(hf_home, repo_id)
    vocab_size, bos, eos = write_tokenizer_files(snapshot)
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**tiny, "vocab_size": vocab_size, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos},
        vision_config={**tiny, "image_size": IMAGE_SIZE, "patch_size": 8},
        projection_dim=512,
        logit_scale_init_value=LOGIT_SCALE,
    )
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(
        snapshot
    )
    if weights:
        torch.manual_seed(0)
        CLIPModel(config).save_pretrained(snapshot)
    else:
        config.save_pretrained(snapshot)
    return snapshot
