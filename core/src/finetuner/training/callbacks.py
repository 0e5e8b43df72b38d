"""Callbacks: hooks into the training loop, plus the built-in ones.

Write your own by subclassing :class:`Callback` and overriding any of its methods; each
gets the :class:`TrainState` (epoch, step, latest loss, metrics history) and may set
``state.stop = True`` to end training after the current step::

    class PrintLoss(finetuner.training.callbacks.Callback):
        def on_step_end(self, state):
            if state.step % 100 == 0:
                print(state.step, state.loss)

    finetuner.fit(..., callbacks=[PrintLoss()])
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    """What callbacks see of the run."""

    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float = math.nan
    learning_rate: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    output_dir: Path | None = None
    model: Any = None


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_evaluate(self, state: TrainState) -> None:
        """Called after each evaluation with ``state.metrics`` set."""

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` evaluations."""

    def __init__(self, monitor: str = "loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.bad = 0

    def on_evaluate(self, state: TrainState) -> None:
        value = state.metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which evaluation did not report; it reports {sorted(state.metrics)}")
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            state.stop = self.bad >= self.patience


class BestModelCheckpoint(Callback):
    """Save the model as an artifact whenever ``monitor`` reaches a new best."""

    def __init__(self, directory: str | Path, monitor: str, mode: str = "max") -> None:
        self.directory, self.monitor, self.mode = Path(directory), monitor, mode
        self.best: float | None = None

    def on_evaluate(self, state: TrainState) -> None:
        from finetuner.artifacts import save

        value = state.metrics.get(self.monitor)
        if value is not None and _improved(value, self.best, self.mode, 0.0):
            self.best = value
            save(state.model, self.directory, metrics={self.monitor: value, "step": state.step})


class MetricsLogger(Callback):
    """Log every step (loss, learning rate) and every evaluation to a file.

    ``.jsonl``: one JSON object per step or evaluation. ``.csv``: long format, one
    ``step,epoch,name,value`` row per number.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".jsonl", ".csv"):
            raise ValueError(f"MetricsLogger writes .jsonl or .csv files, not {self.path.name!r}")

    def on_train_begin(self, state: TrainState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state.step == 0 or not self.path.exists():
            self.path.write_text("step,epoch,name,value\n" if self.path.suffix == ".csv" else "")

    def _write(self, state: TrainState, values: dict[str, float]) -> None:
        with self.path.open("a", newline="") as handle:
            if self.path.suffix == ".jsonl":
                handle.write(json.dumps({"step": state.step, "epoch": state.epoch, **values}) + "\n")
            else:
                csv.writer(handle).writerows([state.step, state.epoch, name, value] for name, value in values.items())

    def on_step_end(self, state: TrainState) -> None:
        self._write(state, {"loss": state.loss, "learning_rate": state.learning_rate})

    def on_evaluate(self, state: TrainState) -> None:
        self._write(state, {f"eval/{k}": v for k, v in state.metrics.items()})


class TensorBoardLogger(Callback):
    """Loss, learning rate and evaluation metrics to TensorBoard (needs the tensorboard package)."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without tensorboard

        self.writer = SummaryWriter(str(log_dir))

    def on_step_end(self, state: TrainState) -> None:
        self.writer.add_scalar("train/loss", state.loss, state.step)
        self.writer.add_scalar("train/learning_rate", state.learning_rate, state.step)

    def on_evaluate(self, state: TrainState) -> None:
        for name, value in state.metrics.items():
            self.writer.add_scalar(f"eval/{name}", value, state.step)

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()
