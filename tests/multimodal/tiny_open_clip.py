"""Tiny open_clip architectures in open_clip's config format, registered for a test; open_clip's BPE vocabulary."""

from __future__ import annotations

import math

import pytest

TINY = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SIGMOID = {**TINY, "init_logit_bias": -10.0, "init_logit_scale": math.log(10.0)}  # trained with the SigLIP loss
RESNET = {**TINY, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8}}  # a ModifiedResNet image encoder
TAG = {"hf_hub": "test-org/tiny-open-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def register_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register Tiny-test (with the pretrained tag ``tiny``), Tiny-sigmoid-test and Tiny-resnet-test for this test."""
    import open_clip

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "Tiny-test", TINY)
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "Tiny-sigmoid-test", SIGMOID)
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "Tiny-resnet-test", RESNET)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "Tiny-test", {"tiny": TAG})
