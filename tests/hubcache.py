"""Pre-fill caches in the layouts the real loaders read, so tests run the real offline paths.

``hub_snapshot`` gives the snapshot folder of a repo id in a Hugging Face hub-layout cache
(``HF_HOME/hub/models--org--name/snapshots/<rev>/``); save a tiny random model and its
tokenizer there with ``save_pretrained`` and ``from_pretrained("org/name")`` finds them with
``HF_HUB_OFFLINE=1``. huggingface_hub reads ``HF_HOME``/``HF_HUB_CACHE`` when it is imported,
so a test must also patch ``huggingface_hub.constants.HF_HUB_CACHE``: :func:`use_hf_home` does.

:func:`hf_home_fixture` and the ``empty_cache`` fixture serve the plugins' conftest files (text
and multimodal import ``empty_cache`` from here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REVISION = "0" * 40


def hub_snapshot(hf_home: Path, repo_id: str) -> Path:
    """Create (if needed) and return the snapshot folder for ``repo_id`` under ``hf_home``."""
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def torch_checkpoint_path(torch_home: Path, file_name: str) -> Path:
    """Where torchvision looks for an official weights file (``TORCH_HOME/hub/checkpoints``)."""
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / file_name


def use_hf_home(monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> None:
    """Point the Hugging Face cache at ``hf_home``, offline.

    huggingface_hub copies HF_HOME into module constants at import time and transformers reads
    those constants on every call, so the constants are patched (the variables too, for subprocesses).
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def hf_home_fixture(write: Callable[[Path], Any]) -> Any:
    """A session fixture giving a new HF_HOME folder that ``write`` fills; the name it is assigned to names it."""

    @pytest.fixture(scope="session")
    def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
        home = tmp_path_factory.mktemp("hf_home")
        write(home)
        return home

    return hf_home


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache, offline: nothing can be downloaded or found in it; returns HF_HOME."""
    home = tmp_path / "empty_hf_home"
    home.mkdir()
    use_hf_home(monkeypatch, home)
    return home
