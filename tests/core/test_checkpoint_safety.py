"""A corrupt or hostile checkpoint at resume: an ArtifactError naming the file, never a raw error, and nothing pickled runs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import finetuner
from finetuner.training.checkpoint import load_checkpoint
from tests.core.helpers import pairs

RUN = {"batch_size": 4, "epochs": 1, "verbose": False}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    finetuner.fit("dummy-text", pairs(16), output_dir=out, **RUN)
    return out


@pytest.fixture
def checkpoint(finished, tmp_path) -> Path:
    """A copy of a finished run's checkpoint, to break."""
    shutil.copytree(finished / "checkpoint", tmp_path / "checkpoint")
    return tmp_path / "checkpoint"


class RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return os.rename, (self.marker, self.marker + ".moved")


def hostile(path: Path) -> None:
    marker = path.parent.parent / "marker"
    marker.write_text("")
    torch.save({"optimizer": RunsCode(str(marker))}, path)


def test_a_hostile_training_state_is_refused_at_resume_and_never_runs(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    hostile(out / "checkpoint" / "training_state.pt")
    with pytest.raises(finetuner.ArtifactError, match=r"training_state\.pt holds more than tensors") as error:
        finetuner.fit("dummy-text", pairs(16), output_dir=out, resume=True, **RUN)
    assert "weights_only" not in str(error.value) and error.value.__cause__ is None and error.value.__suppress_context__
    assert (out / "marker").exists()  # the pickled os.rename never ran


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("state.json", lambda p: p.write_text("{not json"), r"state\.json is not a readable checkpoint state"),
        ("state.json", lambda p: p.write_text("[1, 2]"), r"state\.json holds no checkpoint state"),
        ("state.json", lambda p: p.write_text(json.dumps({"epoch": 0})), r"state\.json .* field 'step' must be int"),
        ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:100]), r"model\.safetensors is not a readable"),
        ("model.safetensors", lambda p: p.unlink(), r"model\.safetensors is not a readable"),
        ("model.safetensors", lambda p: p.write_bytes(b"\x00" * 64), r"model\.safetensors is not a readable"),
        ("training_state.pt", lambda p: p.write_bytes(b"garbage" * 20), r"training_state\.pt holds more than .*, or is corrupt"),
        ("training_state.pt", lambda p: p.write_bytes(p.read_bytes()[:300]), r"training_state\.pt is not a readable"),
        ("training_state.pt", lambda p: p.unlink(), r"training_state\.pt is not a readable training state"),
        ("training_state.pt", lambda p: torch.save([1, 2], p), r"training_state\.pt holds a list"),
        ("training_state.pt", lambda p: torch.save({"rng_torch": 3}, p), r"training_state\.pt does not fit this run"),
        ("training_state.pt", hostile, r"training_state\.pt holds more than tensors .* nothing in it ran \(.*GLOBAL"),
    ],
    ids=[
        "state-not-json",
        "state-a-list",
        "state-without-step",
        "weights-truncated",
        "weights-missing",
        "weights-zeros",
        "training-garbage",
        "training-truncated",
        "training-missing",
        "training-a-list",
        "training-wrong-content",
        "training-hostile",
    ],
)
def test_a_broken_checkpoint_file_is_named(checkpoint, name, damage, message):
    damage(checkpoint / name)
    with pytest.raises(finetuner.ArtifactError, match=message) as error:
        load_checkpoint(checkpoint, finetuner.build_model("dummy-text"), {})
    assert "weights_only=False" not in str(error.value)


def test_weights_of_another_model_are_named(checkpoint):
    with pytest.raises(finetuner.ArtifactError, match=r"the weights in .*model\.safetensors do not fit this model"):
        load_checkpoint(checkpoint, finetuner.build_model("dummy-text", output_dim=8), {})
