"""Training checkpoints for resume: weights (safetensors), optimizer/scheduler/RNG state, progress.

Written atomically to ``<output_dir>/checkpoint`` so a kill at any moment leaves the last
complete one. Optimizer state is stored with ``torch.save`` and read with ``weights_only=True``
(tensors and plain containers only, no arbitrary pickles).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.json"


def save_checkpoint(directory: Path, model: torch.nn.Module, stateful: dict[str, Any], progress: dict[str, Any]) -> None:
    """Write weights, the state dicts of ``stateful`` objects, RNG states and ``progress``."""
    from safetensors.torch import save_model

    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(
            {
                **{name: obj.state_dict() for name, obj in stateful.items() if obj is not None},
                "rng_torch": torch.get_rng_state(),
                **({"rng_cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}),
                "rng_numpy": torch.from_numpy(np.frombuffer(json.dumps(_numpy_state()).encode(), dtype=np.uint8).copy()),
                "rng_python": torch.from_numpy(np.frombuffer(json.dumps(_python_state()).encode(), dtype=np.uint8).copy()),
            },
            tmp / "training_state.pt",
        )
        (tmp / STATE_FILE).write_text(json.dumps(progress))
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(directory: Path, model: torch.nn.Module, stateful: dict[str, Any]) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the progress dict."""
    from safetensors.torch import load_model

    if not (directory / STATE_FILE).is_file():
        old = directory.with_name(directory.name + ".old")  # killed between the two renames
        directory = old if (old / STATE_FILE).is_file() else directory
    load_model(model, str(directory / "model.safetensors"))
    state = torch.load(directory / "training_state.pt", weights_only=True)
    for name, obj in stateful.items():
        if obj is not None:
            obj.load_state_dict(state[name])
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and torch.cuda.is_available() and len(state["rng_cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    _set_numpy_state(json.loads(bytes(state["rng_numpy"].numpy()).decode()))
    _set_python_state(json.loads(bytes(state["rng_python"].numpy()).decode()))
    return json.loads((directory / STATE_FILE).read_text())


def has_checkpoint(directory: Path) -> bool:
    return (directory / STATE_FILE).is_file() or (directory.with_name(directory.name + ".old") / STATE_FILE).is_file()


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
