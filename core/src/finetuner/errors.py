"""The project's own error types: every user-facing failure is one of these."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FinetunerError(Exception):
    """Base class of every error finetuner raises on purpose."""


class UnknownNameError(FinetunerError, ValueError):
    """A name (model, task, loss, ...) that is not one of the valid choices."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str = "") -> None:
        valid = sorted(set(valid))
        by_lower = {v.lower(): v for v in valid}
        close = [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=5, cutoff=0.5)]
        message = f"unknown {kind} {name!r}."
        if close:
            message += f" Did you mean: {', '.join(close)}?"
        if 0 < len(valid) <= 40:
            message += f" Valid: {', '.join(valid)}."
        if hint:
            message += f" {hint}"
        super().__init__(message)
        self.kind, self.name, self.close_matches = kind, name, close


class PluginError(FinetunerError):
    """A plugin failed to load, registered a duplicate name, or its builder raised."""


class DataError(FinetunerError, ValueError):
    """Input data that cannot be read; the message names the file, row or argument."""


class OptionError(FinetunerError, ValueError):
    """An argument whose value is not valid, or not possible here (``device="cuda"`` without a GPU)."""


class ArtifactError(FinetunerError):
    """An artifact directory that is missing, incomplete or unsafe to load, or a path it must not be written to."""


class ExportError(FinetunerError):
    """An ONNX export that failed or did not reproduce the torch model."""


class HubError(FinetunerError):
    """An upload to the Hugging Face Hub that cannot start (offline, unreachable, no token) or failed."""


class ModelNotAvailableError(FinetunerError):
    """Pretrained weights that cannot be reached (for example offline)."""


class TrainingError(FinetunerError):
    """Training stopped: bad options, a non-finite loss, ..."""
