"""Experiment trackers: ``fit(report_to=...)`` logs the run to TensorBoard, MLflow or Weights & Biases.

Each tracker is a :class:`~finetuner.training.callbacks.Callback` (so, under torchrun, it runs
on rank 0 only). It starts a run with the fit options as its params, logs what the history
already holds (the evaluation before training; on resume, the earlier steps), then
``train/loss`` and ``train/learning_rate`` after every optimizer step and ``eval/<metric>``
after every evaluation, by step, and ends the run with the artifact's path; when fit() fails
after training began, it ends the run as failed (MLflow ``FAILED``, or ``KILLED`` on Ctrl-C; W&B
exit code 1), with the error.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from finetuner.errors import FinetunerError, TrainingError, UnknownNameError
from finetuner.training.callbacks import Callback, TrainState
from finetuner.training.options import FitOptions

# name -> (module it needs, extra of finetuner-core that installs it)
REQUIREMENTS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


def tracker_names(report_to: str | Sequence[str] | None) -> list[str]:
    """The trackers ``report_to`` names (a name, comma-separated names or a list), each once; unknown ones refused."""
    given = [report_to] if isinstance(report_to, str) else list(report_to or ())
    if not all(isinstance(item, str) for item in given):
        raise TrainingError(f"report_to takes tracker names ({', '.join(REQUIREMENTS)}), got {report_to!r}")
    names = [part.strip() for item in given for part in item.split(",") if part.strip()]
    for name in names:
        if name not in REQUIREMENTS:
            raise UnknownNameError("tracker in report_to", name, REQUIREMENTS)
    return list(dict.fromkeys(names))


def require(name: str) -> None:
    """Raise a FinetunerError naming the extra to install when tracker ``name``'s package cannot be imported."""
    module, extra = REQUIREMENTS[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise FinetunerError(
            f"report_to={name!r} needs the {module} package: pip install 'finetuner-core[{extra}]' ({exc})"
        ) from exc


def make_trackers(opts: FitOptions, output_dir: str | Path | None) -> list[Callback]:
    """The callbacks of ``opts.report_to``, checked before any work: known names, packages installed, a directory for TensorBoard."""
    names = tracker_names(opts.report_to)
    for name in names:
        require(name)
    if "tensorboard" in names and output_dir is None:
        raise TrainingError("report_to='tensorboard' writes to <output_dir>/tensorboard, so it needs an output_dir")
    out = Path(output_dir) if output_dir is not None else None
    params, run_name = fit_params(opts), out.name if out is not None else None
    made = {
        "tensorboard": lambda: TensorBoardTracker(params, out / "tensorboard" if out else None),
        "mlflow": lambda: MLflowTracker(params, run_name),
        "wandb": lambda: WandbTracker(params, run_name),
    }
    return [made[name]() for name in names]


def fit_params(opts: FitOptions) -> dict[str, Any]:
    """The fit options as a tracker's params; a loss given as a module by its class name."""
    params = {f.name: getattr(opts, f.name) for f in fields(opts)}
    if not (params["loss"] is None or isinstance(params["loss"], str)):
        params["loss"] = type(params["loss"]).__name__
    return params


def _text(value: Any) -> str:
    """A param value as text: JSON for lists and mappings, str for the rest."""
    return json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)


class Tracker(Callback):
    """Base of the trackers: a subclass starts a run, logs numbers by step and ends the run."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def start(self, state: TrainState) -> None:
        """Open the run and record ``self.params``."""
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` at ``step``."""
        raise NotImplementedError

    def finish(self, artifact_dir: Path | None, error: BaseException | None) -> None:
        """Record where the artifact is (None: fit() wrote none) and close the run; marked failed when ``error`` is set."""
        raise NotImplementedError

    def on_train_begin(self, state: TrainState) -> None:
        self.start(state)
        for entry in state.history:
            values = {("train/loss" if k == "loss" else k): v for k, v in entry.items() if k not in ("step", "epoch")}
            self.log(values, entry["step"])

    def on_step_end(self, state: TrainState) -> None:
        self.log({"train/loss": state.loss, "train/learning_rate": state.learning_rate}, state.step)

    def on_evaluate(self, state: TrainState) -> None:
        self.log({f"eval/{k}": v for k, v in state.metrics.items()}, state.step)

    def on_fit_end(self, state: TrainState) -> None:
        self.finish(state.artifact_dir, state.error)


class TensorBoardTracker(Tracker):
    """Scalars in ``<output_dir>/tensorboard``; the params and the artifact's path as the text ``params`` and ``artifact_dir``."""

    def __init__(self, params: dict[str, Any], log_dir: Path) -> None:
        super().__init__(params)
        self.log_dir, self.writer = log_dir, None

    def start(self, state: TrainState) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))
        self.writer.add_text("params", json.dumps(self.params, default=str, indent=2), state.step)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def finish(self, artifact_dir: Path | None, error: BaseException | None) -> None:
        if artifact_dir is not None:
            self.writer.add_text("artifact_dir", str(artifact_dir))
        if error is not None:
            self.writer.add_text("error", _error_text(error))
        self.writer.close()


class MLflowTracker(Tracker):
    """A run in MLflow's tracking URI and experiment (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` or
    ``mlflow.set_experiment``), or the active run; the artifact's path is its tag ``artifact_dir``.

    MLflow names allow no ``@``: ``eval/recall@5`` is logged as ``eval/recall_at_5``.
    """

    def __init__(self, params: dict[str, Any], run_name: str | None) -> None:
        super().__init__(params)
        self.run_name, self.run_id, self.own, self.client = run_name, None, False, None

    def start(self, state: TrainState) -> None:
        import mlflow
        from mlflow.entities import Param

        active = mlflow.active_run()
        self.own = active is None  # a run the user started stays open for them
        self.run_id = (active or mlflow.start_run(run_name=self.run_name)).info.run_id
        self.client = mlflow.MlflowClient()
        self.client.log_batch(self.run_id, params=[Param(k, _text(v)) for k, v in self.params.items()])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_name(k), float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, artifact_dir: Path | None, error: BaseException | None) -> None:
        import mlflow

        if artifact_dir is not None:
            self.client.set_tag(self.run_id, "artifact_dir", str(artifact_dir))
        if error is not None:
            self.client.set_tag(self.run_id, "error", _error_text(error))
        if self.own:
            mlflow.end_run(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED" if error else "FINISHED")


def _error_text(error: BaseException) -> str:
    """How a failed run records its error: ``RuntimeError: disk full``."""
    return f"{type(error).__name__}: {error}"


def _mlflow_name(name: str) -> str:
    """``name`` with what MLflow refuses in metric names replaced: ``@`` by ``_at_``, the rest by ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


class WandbTracker(Tracker):
    """A Weights & Biases run (project ``WANDB_PROJECT``, default ``finetuner``; ``WANDB_MODE=offline`` works without
    network), or the active one; the params are its config, every row carries ``train/step``, and the artifact's
    path is the summary's ``artifact_dir``."""

    def __init__(self, params: dict[str, Any], run_name: str | None) -> None:
        super().__init__(params)
        self.run_name, self.run, self.own = run_name, None, False

    def start(self, state: TrainState) -> None:
        import wandb

        self.own = wandb.run is None  # a run the user started stays open for them
        if self.own:
            project = os.environ.get("WANDB_PROJECT", "finetuner")
            self.run = wandb.init(project=project, name=self.run_name, config=self.params)
        else:
            self.run = wandb.run
            self.run.config.update(self.params, allow_val_change=True)
        self.run.define_metric("*", step_metric="train/step", step_sync=True)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log({"train/step": step, **values})

    def finish(self, artifact_dir: Path | None, error: BaseException | None) -> None:
        if artifact_dir is not None:
            self.run.summary["artifact_dir"] = str(artifact_dir)
        if error is not None:
            self.run.summary["error"] = _error_text(error)
        if self.own:
            self.run.finish(exit_code=1 if error is not None else None)
