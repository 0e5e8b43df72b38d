"""Fixtures: a hub-layout Hugging Face cache with tiny models under the registered ids, or an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hubcache import empty_cache, hf_home_fixture, use_hf_home  # noqa: F401 (empty_cache is a fixture)
from tests.text.tiny_models import write_bert, write_hub_cache

tiny_hub_home = hf_home_fixture(write_hub_cache)  # session-scoped


@pytest.fixture
def hub_cache(tiny_hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The HF cache pointed at the tiny registered models; returns its ``hub`` folder."""
    use_hf_home(monkeypatch, tiny_hub_home)
    return tiny_hub_home / "hub"


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-wide one-layer BERT saved with save_pretrained in a plain folder (no sentence-transformers files)."""
    return write_bert(tmp_path_factory.mktemp("tiny_bert"), hidden=32, cased=False, seed=1)
