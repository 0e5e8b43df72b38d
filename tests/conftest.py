"""Test-wide settings: offline hubs, threads shared among parallel workers, a fresh plugin manager per test."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    # pytest -n N: the cores shared among the N workers (and the processes their tests start), not N times over
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# ../shared/data beside the repository, or wherever FINETUNER_DATA points
SHARED_DATA = Path(os.environ.get("FINETUNER_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Each test discovers plugins anew, so environment changes take effect."""
    from finetuner import plugins

    monkeypatch.delenv("FINETUNER_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("FINETUNER_DISABLE_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
