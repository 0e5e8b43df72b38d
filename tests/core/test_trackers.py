"""fit(report_to=...): each tracker's run read back (TensorBoard event files, an MLflow file store, a W&B offline
run), the names checked, and a tracker whose package is missing refused before any work."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import finetuner
from finetuner.errors import FinetunerError, TrainingError, UnknownNameError
from finetuner.training.callbacks import Callback, MetricsLogger, TrainState
from finetuner.training.options import FitOptions
from finetuner.training.trackers import tracker_names
from tests.core.helpers import pairs

FAST = {"batch_size": 8, "learning_rate": 5e-2, "precision": "fp32", "verbose": False}
TRAIN, EVAL = pairs(24), pairs(16, seed=1)  # 3 steps at batch size 8


@pytest.fixture(autouse=True)
def _offline_trackers(monkeypatch, tmp_path):
    """Every tracker writes under tmp_path and reaches for no network."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses the file store without it
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name, value in {"MODE": "offline", "DIR": str(tmp_path), "SILENT": "true", "CONSOLE": "off"}.items():
        monkeypatch.setenv(f"WANDB_{name}", value)


def fit_with(report_to: Any, tmp_path: Path) -> tuple[Any, Path, list[dict[str, Any]]]:
    """A 3-step fit, evaluated before, at step 2 and after, logged to ``report_to``; the model, its output_dir and
    its steps as fit's MetricsLogger wrote them (loss and learning rate)."""
    out = tmp_path / "run"
    steps = tmp_path / "steps.jsonl"
    model = finetuner.fit(
        "dummy-text",
        TRAIN,
        EVAL,
        eval_every_steps=2,
        report_to=report_to,
        callbacks=[MetricsLogger(steps)],
        output_dir=out,
        **FAST,
    )
    rows = [json.loads(line) for line in steps.read_text().splitlines()]
    return model, out, [r for r in rows if "loss" in r]


def expected(model: Any, logged: list[dict[str, Any]]) -> dict[str, list[tuple[int, Any]]]:
    """What every tracker must hold: loss by step (fit's history), learning rate by step, recall@5 by step (before = 0)."""
    losses = [(h["step"], pytest.approx(h["loss"], rel=1e-6)) for h in model.history if "loss" in h]
    assert [step for step, _ in losses] == [1, 2, 3]
    recall = [(h["step"], pytest.approx(h["eval/recall@5"], rel=1e-6)) for h in model.history if "eval/recall@5" in h]
    assert [step for step, _ in recall] == [0, 2, 3]
    rates = [(r["step"], pytest.approx(r["learning_rate"], rel=1e-6)) for r in logged]
    assert len({r["learning_rate"] for r in logged}) == 3  # the schedule moves: a wrong step would show
    return {"loss": losses, "learning_rate": rates, "recall@5": recall}


def test_tensorboard_tracker_holds_params_steps_evaluations_and_the_artifact(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard (the tensorboard extra) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, out, logged = fit_with("tensorboard", tmp_path)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()

    def scalars(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)]

    def text(tag: str) -> str:
        return events.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()

    want = expected(model, logged)
    assert scalars("train/loss") == want["loss"]
    assert scalars("train/learning_rate") == want["learning_rate"]
    assert scalars("eval/recall@5") == want["recall@5"]
    params = json.loads(text("params"))
    assert params["batch_size"] == 8 and params["learning_rate"] == 5e-2 and params["report_to"] == "tensorboard"
    assert text("artifact_dir") == str(out / "model")


def test_mlflow_tracker_holds_params_steps_evaluations_and_the_artifact(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow (the mlflow extra) is not installed")
    from mlflow import MlflowClient

    model, out, logged = fit_with(["mlflow"], tmp_path)
    client = MlflowClient(f"file:{tmp_path / 'mlruns'}")
    (run,) = client.search_runs(["0"])  # the Default experiment

    def history(name: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]

    want = expected(model, logged)
    assert history("train/loss") == want["loss"]
    assert history("train/learning_rate") == want["learning_rate"]
    assert history("eval/recall_at_5") == want["recall@5"]  # MLflow names allow no '@'
    assert run.data.params["batch_size"] == "8" and run.data.params["report_to"] == '["mlflow"]'
    assert run.data.tags["artifact_dir"] == str(out / "model")
    assert run.info.run_name == "run" and run.info.status == "FINISHED"


def test_mlflow_tracker_logs_into_a_run_the_user_started_and_leaves_it_open(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow (the mlflow extra) is not installed")
    with mlflow.start_run() as mine:
        fit_with("mlflow", tmp_path)
        assert mlflow.active_run().info.run_id == mine.info.run_id
        logged = mlflow.MlflowClient().get_metric_history(mine.info.run_id, "train/loss")
    assert [m.step for m in logged] == [1, 2, 3]


class FailAtStep(Callback):
    """Raises ``error`` after optimizer step ``step``; records what on_fit_end saw."""

    def __init__(self, step: int, error: BaseException) -> None:
        self.step, self.error, self.seen = step, error, None

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            raise self.error

    def on_fit_end(self, state: TrainState) -> None:
        self.seen = (state.error, state.artifact_dir)


@pytest.mark.parametrize("error, status", [(RuntimeError("disk full"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_fit_that_fails_ends_its_runs_as_failed_with_the_error(tmp_path, error, status):
    mlflow = pytest.importorskip("mlflow", reason="mlflow (the mlflow extra) is not installed")
    pytest.importorskip("tensorboard", reason="tensorboard (the tensorboard extra) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    failing = FailAtStep(2, error)
    with pytest.raises(type(error)):
        finetuner.fit(
            "dummy-text", TRAIN, report_to="mlflow,tensorboard", callbacks=[failing], output_dir=tmp_path / "run", **FAST
        )
    assert failing.seen == (error, None)
    assert mlflow.active_run() is None  # not left open for the next fit in this process
    (run,) = mlflow.MlflowClient(f"file:{tmp_path / 'mlruns'}").search_runs(["0"])
    assert run.info.status == status and run.data.tags["error"] == f"{type(error).__name__}: {error}"
    # the callbacks given run before the trackers: step 2 raised before the trackers logged it
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/loss")] == [1]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert events.Tensors("error/text_summary")[-1].tensor_proto.string_val[0].decode() == f"{type(error).__name__}: {error}"


def test_a_fit_refused_before_training_calls_no_on_fit_end(tmp_path):
    failing = FailAtStep(1, RuntimeError("never"))
    with pytest.raises(FinetunerError, match="batch_size"):
        finetuner.fit("dummy-text", TRAIN, callbacks=[failing], output_dir=None, **{**FAST, "batch_size": 0})
    assert failing.seen is None


def wandb_records(run_dir: Path) -> list[Any]:
    """The records of a W&B offline run's ``.wandb`` file: LevelDB log blocks of protobuf ``Record`` chunks."""
    from wandb.proto import wandb_internal_pb2

    data, block = next(run_dir.glob("run-*.wandb")).read_bytes(), 32 * 1024
    assert data[:4] == b":W&B"
    records, position, chunk = [], 7, b""  # after the header: ":W&B", magic, version
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_wandb_tracker_holds_params_steps_evaluations_and_the_artifact(tmp_path):
    pytest.importorskip("wandb", reason="wandb (the wandb extra) is not installed")
    import wandb

    model, out, logged = fit_with("wandb", tmp_path)
    wandb.teardown()  # the run is finished, but the wandb-core service may not have flushed its file yet
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    config, rows, summary = {}, [], {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            assert record.run.project == "finetuner" and record.run.display_name == "run"
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.summary.update})

    def series(name: str) -> list[tuple[int, float]]:
        return [(row["train/step"], row[name]) for row in rows if name in row]

    want = expected(model, logged)
    assert series("train/loss") == want["loss"]
    assert series("train/learning_rate") == want["learning_rate"]
    assert series("eval/recall@5") == want["recall@5"]
    assert config["batch_size"] == 8 and config["learning_rate"] == 5e-2 and config["report_to"] == "wandb"
    assert summary["artifact_dir"] == str(out / "model")


def test_report_to_takes_names_comma_separated_or_a_list_each_once():
    assert tracker_names(None) == [] and tracker_names([]) == []
    assert tracker_names("tensorboard, mlflow") == ["tensorboard", "mlflow"]
    assert tracker_names(["wandb", "mlflow,wandb"]) == ["wandb", "mlflow"]
    with pytest.raises(TrainingError, match="report_to takes tracker names"):
        tracker_names(["mlflow", 3])


def test_an_unknown_tracker_is_refused_with_the_valid_names():
    with pytest.raises(UnknownNameError, match="unknown tracker in report_to 'tensorbord'. Did you mean: tensorboard") as info:
        finetuner.fit("dummy-text", "missing.csv", report_to=["mlflow", "tensorbord"], output_dir=None, **FAST)
    assert "Valid: mlflow, tensorboard, wandb." in str(info.value)
    with pytest.raises(TrainingError, match="report_to must be a list of names or a string or None, got 3"):
        FitOptions(report_to=3)


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_a_tracker_not_installed_is_refused_with_its_extra_before_any_work(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    # the training data does not exist: refusing the tracker first shows no data was read
    with pytest.raises(
        FinetunerError, match=rf"report_to='{name}' needs the {name} package: pip install 'finetuner-core\[{name}\]'"
    ):
        finetuner.fit("dummy-text", "missing.csv", report_to=name, output_dir=None, **FAST)


def test_tensorboard_needs_an_output_dir():
    with pytest.raises(TrainingError, match="report_to='tensorboard' writes to <output_dir>/tensorboard"):
        finetuner.fit("dummy-text", "missing.csv", report_to="tensorboard", output_dir=None, **FAST)


def test_the_cli_flag_and_the_yaml_key_reach_fit(tmp_path):
    from finetuner.commands import fit as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--train-data", "t.csv", "--report-to", "tensorboard,mlflow"])
    assert tracker_names(command.options_from(args)["report_to"]) == ["tensorboard", "mlflow"]
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ntrain_data: t.csv\nreport_to: [mlflow, wandb]\n")
    options = command.options_from(parser.parse_args(["--config", str(config)]))
    assert tracker_names(FitOptions(report_to=options["report_to"]).report_to) == ["mlflow", "wandb"]
