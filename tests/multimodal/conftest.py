"""Fixtures: a hub-layout Hugging Face cache holding a tiny random CLIP, or an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.multimodal.tiny_clip import use_hf_home, write_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf_home")
    write_tiny_clip(home)
    return home


@pytest.fixture
def clip_cache(tiny_clip_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The snapshot folder of the tiny ``openai/clip-vit-base-patch32``, with the cache pointed at it."""
    use_hf_home(monkeypatch, tiny_clip_home)
    return next((tiny_clip_home / "hub").glob("models--openai--clip-vit-base-patch32/snapshots/*"))


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "empty_hf_home"
    home.mkdir()
    use_hf_home(monkeypatch, home)
    return home
