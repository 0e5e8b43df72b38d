"""`finetuner push` and fit(push_to_hub=): with no network they fail at once, with a clear error, and change nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import finetuner
from tests.core.helpers import run_cli, topic_pairs

constants = pytest.importorskip("huggingface_hub.constants")
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return finetuner.save(finetuner.build_model("dummy-text"), tmp_path / "artifact")


def test_offline_push_fails_at_once_and_changes_nothing(artifact):
    before = _snapshot(artifact)
    with pytest.raises(finetuner.HubError, match="HF_HUB_OFFLINE is set"):
        finetuner.push_to_hub(artifact, "someone/model")
    assert _snapshot(artifact) == before


def test_an_unreachable_endpoint_fails_at_once(artifact, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    before, start = _snapshot(artifact), time.monotonic()
    with pytest.raises(finetuner.HubError, match=r"http://127\.0\.0\.1:9 did not accept a connection"):
        finetuner.push_to_hub(artifact, "someone/model")
    assert time.monotonic() - start < 10
    assert _snapshot(artifact) == before


def test_the_command_reports_an_unreachable_hub_in_one_line(artifact):
    before = _snapshot(artifact)
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": UNREACHABLE, "HF_TOKEN": "hf_not_a_real_token"}
    result = run_cli("push", str(artifact), "someone/model", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("finetuner: error: cannot push to the Hugging Face Hub: http://127.0.0.1:9")
    assert "Traceback" not in result.stderr
    assert _snapshot(artifact) == before


def test_fit_with_push_to_hub_offline_fails_before_training(tmp_path):
    with pytest.raises(finetuner.HubError, match="HF_HUB_OFFLINE"):
        finetuner.fit("dummy-text", topic_pairs(20), batch_size=4, output_dir=tmp_path / "run", push_to_hub="someone/model")
    assert not (tmp_path / "run").exists()


def test_pushing_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(finetuner.ArtifactError, match="not a folder"):
        finetuner.push_to_hub(tmp_path / "missing", "someone/model")
