"""Callbacks: hooks into the training loop, plus the built-in ones.

Write your own by subclassing :class:`Callback` and overriding any of its methods. Each
gets the :class:`TrainState` (epoch, step, latest loss, learning rate, the latest
evaluation's metrics, the history, the model, the output directory) and may set
``state.stop = True`` (and ``state.stop_reason``) to end training after the current step::

    class PrintLoss(finetuner.training.callbacks.Callback):
        def on_step_end(self, state):
            if state.step % 100 == 0:
                print(state.step, state.loss)

    finetuner.fit(..., callbacks=[PrintLoss()])

The hooks run in this order: ``on_train_begin``; per optimizer step ``on_step_end``, then
``on_evaluate`` when ``eval_every_steps`` is due; per epoch ``on_epoch_end``, then
``on_evaluate`` when ``eval_every_epochs`` is due; ``on_evaluate`` once more for the final
evaluation (when fit() has eval_data); ``on_train_end``; ``on_fit_end`` once fit() wrote the
artifact (``state.artifact_dir``). With several processes
(torchrun) callbacks run on rank 0 only, and its ``state.stop`` holds on every rank.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetuner.errors import OptionError, TrainingError


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
    stop_reason: str = ""
    output_dir: Path | None = None
    model: Any = None
    artifact_dir: Path | None = None  # set for on_fit_end: where fit() wrote the artifact (None without output_dir)
    error: BaseException | None = None  # set for on_fit_end when fit() failed (Ctrl-C included) after training began


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first step (after the first evaluation, when fit() has eval_data)."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimizer step; ``state.loss`` and ``state.learning_rate`` are that step's."""

    def on_evaluate(self, state: TrainState) -> None:
        """After each evaluation during training and the final one, with ``state.metrics`` set."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each complete epoch; ``state.epoch`` counts the epochs done."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step (or the step that stopped training) and the final evaluation."""

    def on_fit_end(self, state: TrainState) -> None:
        """Last, once fit() wrote the artifact to ``state.artifact_dir`` (None: fit() has no output_dir); also when fit()
        fails after ``on_train_begin``, with the exception in ``state.error`` (fit() then raises it)."""


def _check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise OptionError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


def _monitored(state: TrainState, monitor: str, owner: str) -> float:
    if monitor not in state.metrics:
        raise TrainingError(
            f"{owner} monitors {monitor!r}, which evaluation does not report; it reports: {', '.join(state.metrics)}"
        )
    return state.metrics[monitor]


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return not math.isnan(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _directory(given: Path | None, state: TrainState, default: str, owner: str) -> Path:
    if given is not None:
        return given
    if state.output_dir is None:
        raise TrainingError(f"{owner} needs a path when fit() has no output_dir")
    return Path(state.output_dir) / default


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` evaluations in a row.

    ``monitor`` is an evaluation metric (``"ndcg@10"``, ``"t2i/recall@5"``, ``"spearman"``);
    ``mode="max"`` for metrics where higher is better, ``"min"`` otherwise. Needs fit()'s
    eval_data and ``eval_every_steps`` or ``eval_every_epochs``. Afterwards ``best``,
    ``best_step`` and ``stopped_step`` (None when it did not stop) tell what happened; the
    artifact's ``training.stopped_early`` records it too.
    """

    def __init__(self, monitor: str, mode: str = "max", patience: int = 3, min_delta: float = 0.0) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise OptionError(f"patience must be a positive integer, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise OptionError(f"min_delta must be 0 or more, got {min_delta!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, _check_mode(mode), patience, min_delta
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_step: int | None = None
        self.stopped_step: int | None = None
        self.waited = 0
        self.evaluations = 0

    def on_train_begin(self, state: TrainState) -> None:
        self._reset()

    def on_evaluate(self, state: TrainState) -> None:
        value = _monitored(state, self.monitor, "EarlyStopping")
        self.evaluations += 1
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_step, self.waited = value, state.step, 0
            return
        self.waited += 1
        if self.waited >= self.patience and not state.stop and state.step < state.total_steps:  # not after the last step
            state.stop, self.stopped_step = True, state.step
            state.stop_reason = (
                f"EarlyStopping: {self.monitor} did not improve by more than {self.min_delta} in {self.patience} evaluations "
                f"(best {self.best} at step {self.best_step})"
            )

    def on_train_end(self, state: TrainState) -> None:
        if self.evaluations < 2:
            warnings.warn(
                "EarlyStopping saw no evaluation during training: give fit() eval_data and eval_every_steps or eval_every_epochs",
                stacklevel=2,
            )


class BestModelCheckpoint(Callback):
    """Save the model as an artifact (loadable by ``finetuner.load``) whenever ``monitor`` reaches a new best.

    ``directory`` defaults to ``<output_dir>/best``. The artifact's JSON holds that
    evaluation's metrics and ``"best": {"monitor", "value", "mode", "step", "epoch"}``.
    """

    def __init__(self, monitor: str, mode: str = "max", directory: str | Path | None = None) -> None:
        self.monitor, self.mode = monitor, _check_mode(mode)
        self.given = Path(directory) if directory is not None else None
        self.directory: Path | None = self.given
        self.best: float | None = None
        self.best_step: int | None = None

    def on_train_begin(self, state: TrainState) -> None:
        self.directory = _directory(self.given, state, "best", "BestModelCheckpoint")
        self.best = self.best_step = None

    def on_evaluate(self, state: TrainState) -> None:
        from finetuner.artifacts import save

        value = _monitored(state, self.monitor, "BestModelCheckpoint")
        if _improved(value, self.best, self.mode, 0.0):
            self.best, self.best_step = value, state.step
            best = {"monitor": self.monitor, "value": value, "mode": self.mode, "step": state.step, "epoch": state.epoch}
            save(state.model, self.directory, metrics=dict(state.metrics), extra={"best": best})


class MetricsLogger(Callback):
    """Log every step (loss, learning rate) and every evaluation to a file, default ``<output_dir>/metrics.jsonl``.

    ``.jsonl``: one JSON object per step or evaluation (``{"step", "epoch", "loss",
    "learning_rate"}`` or ``{"step", "epoch", "eval/<metric>": ...}``). ``.csv``: long
    format, one ``step,epoch,name,value`` row per number. A resumed run keeps the rows up
    to the step it resumes from and appends.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.given = Path(path) if path is not None else None
        if self.given is not None and self.given.suffix not in (".jsonl", ".csv"):
            raise OptionError(f"MetricsLogger writes .jsonl or .csv files, not {self.given.name!r}")
        self.path: Path | None = self.given

    def on_train_begin(self, state: TrainState) -> None:
        self.path = path = _directory(self.given, state, "metrics.jsonl", "MetricsLogger")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "step,epoch,name,value\n" if path.suffix == ".csv" else ""
        if state.step == 0 or not path.exists():
            path.write_text(header)
            return
        lines = path.read_text().splitlines(keepends=True)[1 if header else 0 :]
        kept = [line for line in lines if line.strip() and self._step_of(line) <= state.step]  # drop rows past the checkpoint
        path.write_text(header + "".join(kept))

    def _step_of(self, line: str) -> int:
        return int(json.loads(line)["step"]) if self.path.suffix == ".jsonl" else int(line.split(",", 1)[0])

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
    """Loss, learning rate and evaluation metrics as TensorBoard scalars, default in ``<output_dir>/tensorboard``.

    Needs the tensorboard package (``pip install 'finetuner-core[tensorboard]'``); tags are ``train/loss``,
    ``train/learning_rate`` and ``eval/<metric>``, by step.
    """

    def __init__(self, log_dir: str | Path | None = None) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install 'finetuner-core[tensorboard]'"
            ) from exc
        self.given = Path(log_dir) if log_dir is not None else None
        self.writer: Any = None

    def on_train_begin(self, state: TrainState) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(_directory(self.given, state, "tensorboard", "TensorBoardLogger")))

    def on_step_end(self, state: TrainState) -> None:
        self.writer.add_scalar("train/loss", state.loss, state.step)
        self.writer.add_scalar("train/learning_rate", state.learning_rate, state.step)

    def on_evaluate(self, state: TrainState) -> None:
        for name, value in state.metrics.items():
            self.writer.add_scalar(f"eval/{name}", value, state.step)
        self.writer.flush()

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()
