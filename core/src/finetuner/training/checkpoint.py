"""Training checkpoints for resume: weights (safetensors), optimizer/scheduler/RNG state, progress.

Written atomically to ``<output_dir>/checkpoint`` (see :mod:`finetuner._atomic`) so a kill at
any moment leaves the last complete one. Optimizer state is stored with ``torch.save`` and
read with ``weights_only=True`` (tensors and plain containers only, no arbitrary pickles).
"""

from __future__ import annotations

import io
import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner._atomic import check_target, current, write_folder
from finetuner.errors import ArtifactError

STATE_FILE = "state.json"
TRAINING_FILE = "training_state.pt"
PROGRESS_FIELDS = {"epoch": int, "step": int, "sampler": dict, "history": list}  # what resume reads from STATE_FILE


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    stateful: dict[str, Any],
    progress: dict[str, Any],
    *,
    overwrite: bool = False,
) -> None:
    """Write weights, the state dicts of ``stateful`` objects, RNG states and ``progress``.

    ``directory`` is replaced only when it is missing, empty or a checkpoint (see :func:`check_checkpoint_dir`).
    """
    from safetensors.torch import save_model

    check_checkpoint_dir(directory, overwrite=overwrite)
    with write_folder(directory) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        state = io.BytesIO()  # written by Python, a full disk is an OSError (torch.save to a file says "unexpected pos")
        torch.save(
            {
                **{name: obj.state_dict() for name, obj in stateful.items() if obj is not None},
                "rng_torch": torch.get_rng_state(),
                **({"rng_cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}),
                "rng_numpy": torch.from_numpy(np.frombuffer(json.dumps(_numpy_state()).encode(), dtype=np.uint8).copy()),
                "rng_python": torch.from_numpy(np.frombuffer(json.dumps(_python_state()).encode(), dtype=np.uint8).copy()),
            },
            state,
        )
        (tmp / TRAINING_FILE).write_bytes(state.getbuffer())
        (tmp / STATE_FILE).write_text(json.dumps(progress))


def check_checkpoint_dir(directory: Path, *, overwrite: bool = False) -> None:
    """Raise :class:`ArtifactError` unless ``directory`` may take a checkpoint: missing, empty, a checkpoint, or ``overwrite``."""
    check_target(directory, ours=_is_checkpoint, what="a finetuner checkpoint", overwrite=overwrite)


def check_output_dir(out: Path, *, overwrite: bool = False) -> None:
    """Refuse, before any work, an ``output_dir`` whose ``model/`` or ``checkpoint/`` holds something finetuner did not write."""
    from finetuner.artifacts import check_artifact_dir

    check_artifact_dir(out / "model", overwrite=overwrite)
    check_checkpoint_dir(out / "checkpoint", overwrite=overwrite)


def load_checkpoint(directory: Path, model: torch.nn.Module, stateful: dict[str, Any]) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the progress dict.

    A file that is missing, corrupt, foreign or made for another run raises :class:`ArtifactError`
    naming it. The training state is read with ``weights_only=True``: nothing pickled in it runs.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    directory = current(directory)
    progress = read_progress(directory)
    for key, kind in PROGRESS_FIELDS.items():
        if not isinstance(progress.get(key), kind) or isinstance(progress.get(key), bool):
            raise ArtifactError(
                f"cannot resume: {directory / STATE_FILE} is not a checkpoint state finetuner wrote: "
                f"its field {key!r} must be {kind.__name__}, got {str(progress.get(key))[:60]!r}"
            )
    training = directory / TRAINING_FILE
    state = _read_training_state(training)
    weights = directory / "model.safetensors"
    try:
        load_model(model, str(weights))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(
            f"cannot resume: {weights} is not a readable safetensors file (truncated, or another format): {exc}"
        ) from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"cannot resume: the weights in {weights} do not fit this model: {exc}") from exc
    try:
        for name, obj in stateful.items():
            if obj is not None:
                obj.load_state_dict(state[name])
        torch.set_rng_state(state["rng_torch"])
        if "rng_cuda" in state and torch.cuda.is_available() and len(state["rng_cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        _set_numpy_state(json.loads(bytes(state["rng_numpy"].numpy()).decode()))
        _set_python_state(json.loads(bytes(state["rng_python"].numpy()).decode()))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ArtifactError(f"cannot resume: {training} does not fit this run ({type(exc).__name__}: {exc})") from exc
    return progress


def _read_training_state(path: Path) -> dict[str, Any]:
    """The optimizer, scheduler and RNG states, read with ``weights_only=True``; ArtifactError naming ``path`` otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text suggests weights_only=False: never pass that on
        found = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise ArtifactError(
            f"cannot resume: {path} holds more than tensors and plain containers, or is corrupt; it was not loaded, and "
            f"nothing in it ran{f' ({found})' if found else ''}. Delete the checkpoint folder to start the run over"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ArtifactError(
            f"cannot resume: {path} is not a readable training state (truncated, or another format): {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise ArtifactError(f"cannot resume: {path} holds a {type(state).__name__}, not the training state finetuner writes")
    return state


def has_checkpoint(directory: Path) -> bool:
    """Whether a complete checkpoint is in ``directory`` (or was left beside it by a save killed between its renames)."""
    return _is_checkpoint(current(directory))


def read_progress(directory: Path) -> dict[str, Any]:
    """The progress :func:`save_checkpoint` recorded (epoch, step, ...), read without loading any weights."""
    path = current(directory) / STATE_FILE
    try:
        progress = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot resume: {path} is not a readable checkpoint state: {exc}") from exc
    if not isinstance(progress, dict):
        raise ArtifactError(f"cannot resume: {path} holds no checkpoint state (a JSON object)")
    return progress


def _is_checkpoint(directory: Path) -> bool:
    return (directory / STATE_FILE).is_file()


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list[Any]) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list[Any]) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))
