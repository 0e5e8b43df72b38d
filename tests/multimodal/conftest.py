"""Fixtures: a hub-layout Hugging Face cache holding a tiny random CLIP, or an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hubcache import empty_cache, hf_home_fixture, use_hf_home  # noqa: F401 (empty_cache is a fixture)
from tests.multimodal.tiny_clip import write_tiny_clip

tiny_clip_home = hf_home_fixture(write_tiny_clip)  # session-scoped


@pytest.fixture
def clip_cache(tiny_clip_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The snapshot folder of the tiny ``openai/clip-vit-base-patch32``, with the cache pointed at it."""
    use_hf_home(monkeypatch, tiny_clip_home)
    return next((tiny_clip_home / "hub").glob("models--openai--clip-vit-base-patch32/snapshots/*"))
