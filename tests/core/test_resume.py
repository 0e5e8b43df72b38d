"""Kill -9 in the middle of training, resume, and get the weights of an uninterrupted run.

The killed run is a real subprocess (``python -c``) slowed down by a callback so the test can
SIGKILL it once a checkpoint is on disk; the resumed run goes through ``fit(..., resume=True)``
or ``finetuner fit --resume``. The loss used by most cases draws from torch, numpy and Python's
random generators every step, so the RNG state has to come back exactly too.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import finetuner
from finetuner.cli import main
from finetuner.training.callbacks import Callback
from tests.core.resume_run import EPOCHS, OPTIONS, STEPS_PER_EPOCH, train

ROOT = Path(__file__).resolve().parents[2]
TOTAL = STEPS_PER_EPOCH * EPOCHS


def write_pairs(path: Path, n: int = STEPS_PER_EPOCH * 8) -> Path:
    rng = random.Random(0)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    rows = [
        f"{words[i % 6]} question {rng.randint(0, 999)},notes on {words[i % 6][::-1]} {rng.randint(0, 999)}" for i in range(n)
    ]
    path.write_text("query,document\n" + "\n".join(rows) + "\n")
    return path


def run_and_kill(tmp_path: Path, train_data: Path, out: Path, noisy: bool, every: int | None, until: Any) -> dict[str, Any]:
    """Start a slowed-down run in a subprocess, SIGKILL it when ``until(state.json)`` holds; return that state."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.core.resume_run import train; "
        f"train({str(train_data)!r}, {str(out)!r}, {noisy!r}, {every!r}, delay=0.3)"
    )
    log = (tmp_path / "killed-run.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    state_file = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                progress = json.loads(state_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                progress = None
            if progress is not None and until(progress):
                break
            time.sleep(0.02)
        assert process.poll() is None, (
            f"the run ended before it could be killed: {(tmp_path / 'killed-run.log').read_text()[-2000:]}"
        )
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "model").exists()
    if not state_file.is_file():  # killed between the two renames of a checkpoint save
        state_file = out / ".checkpoint.old" / "state.json"
    return json.loads(state_file.read_text())


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if not torch.equal(got[name], expected[name])]
    assert not different, f"tensors differ from the uninterrupted run: {different}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[bool, dict[str, torch.Tensor]]:
    """Final weights of uninterrupted runs without checkpoints, with the noisy loss and with the default one."""
    base = tmp_path_factory.mktemp("reference")
    data = write_pairs(base / "train.csv")
    weights = {}
    for noisy in (True, False):
        train(str(data), str(base / f"noisy-{noisy}"), noisy, checkpoint_every_steps=None)
        weights[noisy] = final_weights(base / f"noisy-{noisy}")
    return weights


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    progress = run_and_kill(tmp_path, data, out, noisy=True, every=1, until=lambda p: p["step"] > STEPS_PER_EPOCH)
    assert progress["epoch"] >= 1 and 0 < progress["sampler"]["position"] < STEPS_PER_EPOCH, progress  # killed mid-epoch
    (out / ".checkpoint.tmp-killed").mkdir()  # what a kill in the middle of a checkpoint save leaves
    (out / ".checkpoint.tmp-killed" / "model.safetensors").write_bytes(b"half")
    assert train(str(data), str(out), noisy=True, checkpoint_every_steps=1, resume=True) == TOTAL - progress["step"]
    assert_same_weights(final_weights(out), reference[True])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "model"]
    record = json.loads((out / "model" / "finetuner.json").read_text())["training"]
    assert record["steps"] == TOTAL
    assert [h["step"] for h in record["history"]] == list(range(1, TOTAL + 1))


def test_kill_9_then_cli_fit_resume_from_an_epoch_boundary(tmp_path, reference, caplog):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    progress = run_and_kill(tmp_path, data, out, noisy=False, every=None, until=lambda p: p["epoch"] >= 1)
    assert progress["sampler"]["position"] == 0 and progress["step"] == progress["epoch"] * STEPS_PER_EPOCH < TOTAL, progress
    options = {**OPTIONS, "model": "dummy-text", "train_data": str(data), "output_dir": str(out)}
    del options["verbose"]
    config = tmp_path / "run.yaml"
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in options.items()))
    with caplog.at_level(logging.INFO, logger="finetuner"):
        assert main(["fit", "--config", str(config), "--resume", "--quiet"]) == 0
    assert f"at epoch {progress['epoch'] + 1}, step {progress['step']}" in caplog.text
    assert_same_weights(final_weights(out), reference[False])


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, reference):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    assert train(str(data), str(out), noisy=False, checkpoint_every_steps=None, resume=True) == TOTAL
    assert_same_weights(final_weights(out), reference[False])


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: Any) -> None:
        state.stop = state.step == self.step


def test_resume_after_a_crash_between_the_two_renames_of_a_checkpoint_save(tmp_path, reference):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    finetuner.fit("dummy-text", str(data), output_dir=out, checkpoint_every_steps=1, callbacks=[StopAt(6)], **OPTIONS)
    shutil.rmtree(out / "model")
    os.replace(out / "checkpoint", out / ".checkpoint.old")  # the new one was never moved in
    assert train(str(data), str(out), noisy=False, checkpoint_every_steps=None, resume=True) == TOTAL - 6
    assert_same_weights(final_weights(out), reference[False])


def test_resume_with_another_batch_size_is_refused(tmp_path):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    finetuner.fit("dummy-text", str(data), output_dir=out, checkpoint_every_steps=1, callbacks=[StopAt(2)], **OPTIONS)
    with pytest.raises(finetuner.DataError, match="cannot resume: the sampler state has batch_size=8, this sampler batch_size=4"):
        finetuner.fit("dummy-text", str(data), output_dir=out, resume=True, **{**OPTIONS, "batch_size": 4})


def test_checkpoints_are_complete_and_leave_no_temporary_directories(tmp_path, reference):
    data, out = write_pairs(tmp_path / "train.csv"), tmp_path / "run"
    train(str(data), str(out), noisy=False, checkpoint_every_steps=4)
    assert_same_weights(final_weights(out), reference[False])  # checkpointing does not change the run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "model"]
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["model.safetensors", "state.json", "training_state.pt"]
    progress = json.loads((out / "checkpoint" / "state.json").read_text())
    assert (progress["epoch"], progress["step"], progress["sampler"]["position"]) == (EPOCHS, TOTAL, 0)
