"""Fixtures: a hub-layout Hugging Face cache with tiny models under the registered ids, or an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.text.tiny_models import use_hf_home, write_bert, write_hub_cache


@pytest.fixture(scope="session")
def tiny_hub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf_home")
    write_hub_cache(home)
    return home


@pytest.fixture
def hub_cache(tiny_hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The HF cache pointed at the tiny registered models; returns its ``hub`` folder."""
    use_hf_home(monkeypatch, tiny_hub_home)
    return tiny_hub_home / "hub"


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "empty_hf_home"
    home.mkdir()
    use_hf_home(monkeypatch, home)
    return home


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-wide one-layer BERT saved with save_pretrained in a plain folder (no sentence-transformers files)."""
    return write_bert(tmp_path_factory.mktemp("tiny_bert"), hidden=32, cased=False, seed=1)
