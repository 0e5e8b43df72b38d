"""What a run trains: its model, loss and data, recorded in each checkpoint so that a resume with others is refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from os import PathLike
from typing import Any

import numpy as np

from finetuner.errors import DataError, TrainingError
from finetuner.models.embedding import EmbeddingModel


def run_identity(model: EmbeddingModel, loss: str, loss_options: dict[str, Any], miner: str | None, data: Any) -> dict[str, str]:
    """The model, the loss and the training data, each as a line that tells them apart (the data by a hash of its content)."""
    towers = [
        s["name"] + (f" {json.dumps(s['options'], sort_keys=True, default=str)}" if s.get("options") else "")
        for s in model.sources
    ] or [type(t).__qualname__ for t in model.towers.values()]
    described = "+".join(towers) + (f", output_dim={model.projection_dim}" if model.projection_dim else "")
    frozen = model.frozen_modalities()
    described += f", frozen: {', '.join(frozen)}" if frozen else ""
    described += f", lora {json.dumps(model.lora, sort_keys=True)}" if model.lora else ""
    loss_line = loss + (f", miner {miner}" if miner else "")
    loss_line += f", {json.dumps(loss_options, sort_keys=True, default=str)}" if loss_options else ""
    return {"model": described, "loss": loss_line, "data": f"{data.kind}, {len(data)} examples, content hash {data_hash(data)}"}


def check_same_run(saved: dict[str, str] | None, now: dict[str, str], checkpoint: Any) -> None:
    """Refuse to resume from ``checkpoint`` when it was made with another model, loss or data than ``now``."""
    differ = [what for what in ("model", "loss", "data") if saved and what in saved and saved[what] != now[what]]
    if not differ:
        return
    details = "; ".join(f"{what}: the checkpoint's is {saved[what]!r}, this run's {now[what]!r}" for what in differ)
    error = DataError if differ == ["data"] else TrainingError
    raise error(
        f"cannot resume from {checkpoint}: it was made with another {' and '.join(differ)} ({details}). "
        "Resume with the same model, loss and data, or run without resume to start afresh (that replaces the checkpoint)"
    )


def data_hash(data: Any) -> str:
    """A hash of the content of every field of a data set (its ``source`` aside): texts, paths, labels, scores, pixels."""
    digest = hashlib.blake2b(digest_size=8)
    for field in dataclasses.fields(data):
        if field.name != "source":
            digest.update(field.name.encode())
            _feed(digest, getattr(data, field.name))
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, (list, tuple)):
        digest.update(b"[%d" % len(value))
        for item in value:
            _feed(digest, item)
        return
    if hasattr(value, "detach"):  # a tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        raw = f"array {value.dtype} {value.shape}".encode() + np.ascontiguousarray(value).tobytes()
    elif hasattr(value, "tobytes") and hasattr(value, "mode"):  # a PIL image
        raw = f"image {value.mode} {value.size}".encode() + value.tobytes()
    elif isinstance(value, (str, PathLike)):
        raw = str(value).encode("utf-8", "surrogatepass")
    elif isinstance(value, (int, float, np.integer, np.floating)):
        raw = repr(float(value)).encode()
    elif isinstance(value, dict):
        raw = json.dumps(value, sort_keys=True, default=str).encode()
    else:
        raw = type(value).__qualname__.encode()
    digest.update(len(raw).to_bytes(8, "little"))
    digest.update(raw)
