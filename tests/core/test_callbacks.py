"""Callbacks end to end through fit() on the dummy backbones: early stopping, best checkpoint, logs, user hooks."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import pytest

import finetuner
from finetuner.training.callbacks import (
    BestModelCheckpoint,
    Callback,
    EarlyStopping,
    MetricsLogger,
    TensorBoardLogger,
    TrainState,
)
from tests.core.helpers import pairs

FAST = {"batch_size": 8, "learning_rate": 5e-2, "precision": "fp32", "verbose": False}
TRAIN, EVAL = pairs(40), pairs(24, seed=1)  # 5 steps per epoch at batch size 8


def evaluations(history: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    return [(h["step"], h[f"eval/{metric}"]) for h in history if f"eval/{metric}" in h]


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.calls.append(("on_train_begin", state.step))

    def on_step_end(self, state: TrainState) -> None:
        self.calls.append(("on_step_end", state.step))

    def on_evaluate(self, state: TrainState) -> None:
        assert state.metrics and "recall@5" in state.metrics
        self.calls.append(("on_evaluate", state.step))

    def on_epoch_end(self, state: TrainState) -> None:
        self.calls.append(("on_epoch_end", state.step))

    def on_train_end(self, state: TrainState) -> None:
        self.calls.append(("on_train_end", state.step))


def test_a_user_callback_receives_every_hook_in_order(tmp_path):
    recorder = Recorder()
    finetuner.fit("dummy-text", TRAIN, EVAL, epochs=3, eval_every_epochs=1, callbacks=[recorder], output_dir=None, **FAST)
    expected = [("on_train_begin", 0)]
    for epoch in range(3):
        expected += [("on_step_end", step) for step in range(epoch * 5 + 1, epoch * 5 + 6)]
        expected.append(("on_epoch_end", epoch * 5 + 5))
        if epoch < 2:  # the last epoch's evaluation is the final one
            expected.append(("on_evaluate", epoch * 5 + 5))
    expected += [("on_evaluate", 15), ("on_train_end", 15)]
    assert recorder.calls == expected


def test_periodic_evaluation_by_steps_lands_in_the_history_with_before_and_after():
    model = finetuner.fit("dummy-text", TRAIN, EVAL, epochs=2, eval_every_steps=4, output_dir=None, **FAST)
    points = evaluations(model.history, "recall@5")
    assert [step for step, _ in points] == [0, 4, 8, 10]  # before, every 4 steps, the final one (no duplicate)
    assert points[0][1] == pytest.approx(model.metrics["before"]["recall@5"])
    assert points[-1][1] == pytest.approx(model.metrics["after"]["recall@5"])


def test_early_stopping_stops_training_and_the_run_records_where(tmp_path):
    stopper = EarlyStopping(
        "recall@5", mode="max", patience=2, min_delta=1.0
    )  # no metric can gain 1.0: stops at the 3rd evaluation
    model = finetuner.fit(
        "dummy-text", TRAIN, EVAL, epochs=4, eval_every_steps=2, callbacks=[stopper], output_dir=tmp_path, **FAST
    )
    steps = [h["step"] for h in model.history if "loss" in h]
    assert steps == list(range(1, 7))  # 20 steps planned, 6 run
    assert (stopper.best_step, stopper.stopped_step) == (2, 6)
    record = json.loads((tmp_path / "model" / "finetuner.json").read_text())["training"]
    assert record["steps"] == 6
    assert record["stopped_early"]["step"] == 6 and record["stopped_early"]["epoch"] == 1
    assert "EarlyStopping: recall@5 did not improve" in record["stopped_early"]["reason"]
    # the final numbers are those of the evaluation that stopped the run, not a second one
    assert [step for step, _ in evaluations(model.history, "recall@5")] == [0, 2, 4, 6]
    assert model.metrics["after"] == {k.removeprefix("eval/"): v for k, v in model.history[-1].items() if k.startswith("eval/")}


def test_early_stopping_in_min_mode_waits_for_patience():
    stopper = EarlyStopping("recall@5", mode="min", patience=3)
    state = TrainState(total_steps=100)
    for step, value in enumerate([0.5, 0.45, 0.5, 0.3, 0.35, 0.31], start=1):  # 0.3 at step 4 resets the wait
        state.step, state.metrics = step, {"recall@5": value}
        stopper.on_evaluate(state)
        assert not state.stop
    state.step, state.metrics = 7, {"recall@5": 0.3}  # equal is no improvement: the third in a row
    stopper.on_evaluate(state)
    assert state.stop and (stopper.best, stopper.best_step, stopper.stopped_step) == (0.3, 4, 7)


def test_a_run_that_improves_is_not_stopped():
    stopper = EarlyStopping("recall@20", patience=10)
    finetuner.fit("dummy-text", TRAIN, EVAL, epochs=2, eval_every_steps=2, callbacks=[stopper], output_dir=None, **FAST)
    assert stopper.stopped_step is None and stopper.evaluations == 5


def test_early_stopping_on_a_metric_evaluation_does_not_report_names_the_valid_ones():
    with pytest.raises(
        finetuner.TrainingError, match=r"monitors 'ndcg@3', which evaluation does not report; it reports: .*ndcg@5"
    ):
        finetuner.fit("dummy-text", TRAIN, EVAL, eval_every_steps=2, callbacks=[EarlyStopping("ndcg@3")], output_dir=None, **FAST)


def test_early_stopping_without_periodic_evaluation_warns():
    with pytest.warns(UserWarning, match="EarlyStopping saw no evaluation during training"):
        finetuner.fit("dummy-text", TRAIN, EVAL, callbacks=[EarlyStopping("recall@5")], output_dir=None, **FAST)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"mode": "up"}, "mode must be 'min' or 'max'"), ({"patience": 0}, "patience must be a positive integer")],
)
def test_early_stopping_checks_its_options(options, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping("recall@5", **options)


def test_a_callback_setting_stop_is_recorded(tmp_path):
    class StopAtThree(Callback):
        def on_step_end(self, state: TrainState) -> None:
            state.stop = state.step == 3

    model = finetuner.fit("dummy-text", TRAIN, epochs=2, callbacks=[StopAtThree()], output_dir=tmp_path, **FAST)
    assert max(h["step"] for h in model.history) == 3
    record = json.loads((tmp_path / "model" / "finetuner.json").read_text())["training"]
    assert record["stopped_early"] == {"step": 3, "epoch": 0, "reason": "a callback set state.stop"}


def test_best_model_checkpoint_writes_a_loadable_artifact_of_the_best_evaluation(tmp_path):
    best = BestModelCheckpoint("ndcg@10", mode="max")
    model = finetuner.fit("dummy-text", TRAIN, EVAL, epochs=3, eval_every_steps=3, callbacks=[best], output_dir=tmp_path, **FAST)
    seen = [
        (step, value) for step, value in evaluations(model.history, "ndcg@10") if step > 0
    ]  # the callback sees training's evaluations
    best_step, best_value = max(seen, key=lambda point: (point[1], -point[0]))
    config = json.loads((tmp_path / "best" / "finetuner.json").read_text())
    assert config["best"]["monitor"] == "ndcg@10" and config["best"]["step"] == best_step == best.best_step
    assert config["best"]["value"] == pytest.approx(best_value)
    assert config["metrics"]["ndcg@10"] == pytest.approx(best_value) and "recall@5" in config["metrics"]
    loaded = finetuner.load(tmp_path / "best")
    assert finetuner.evaluate(loaded, EVAL, precision="fp32")["ndcg@10"] == pytest.approx(best_value, abs=1e-6)


def test_best_model_checkpoint_in_min_mode_keeps_the_lowest(tmp_path):
    best = BestModelCheckpoint("mrr@1", mode="min", directory=tmp_path / "lowest")
    model = finetuner.fit("dummy-text", TRAIN, EVAL, epochs=2, eval_every_steps=2, callbacks=[best], output_dir=None, **FAST)
    lowest = min(value for step, value in evaluations(model.history, "mrr@1") if step > 0)
    assert json.loads((tmp_path / "lowest" / "finetuner.json").read_text())["best"]["value"] == pytest.approx(lowest)
    finetuner.load(tmp_path / "lowest")


def test_best_model_checkpoint_needs_a_directory_without_output_dir():
    with pytest.raises(finetuner.TrainingError, match="BestModelCheckpoint needs a path when fit\\(\\) has no output_dir"):
        finetuner.fit("dummy-text", TRAIN, EVAL, callbacks=[BestModelCheckpoint("recall@5")], output_dir=None, **FAST)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_metrics_logger_files_parse_and_match_the_history(tmp_path, suffix):
    path = tmp_path / "logs" / f"metrics{suffix}"
    model = finetuner.fit(
        "dummy-text", TRAIN, EVAL, epochs=2, eval_every_steps=5, callbacks=[MetricsLogger(path)], output_dir=None, **FAST
    )
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        assert all(0 < r["learning_rate"] for r in rows if "loss" in r)
        recall = [(r["step"], r["eval/recall@5"]) for r in rows if "eval/recall@5" in r]
    else:
        rows = list(csv.DictReader(path.open()))
        assert set(rows[0]) == {"step", "epoch", "name", "value"}
        losses = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == "loss"]
        recall = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == "eval/recall@5"]
    assert losses == [(h["step"], pytest.approx(h["loss"])) for h in model.history if "loss" in h]
    assert [step for step, _ in losses] == list(range(1, 11))
    assert recall == [(step, pytest.approx(value)) for step, value in evaluations(model.history, "recall@5") if step > 0]
    assert [step for step, _ in recall] == [5, 10]


def test_metrics_logger_defaults_to_the_output_dir_and_rejects_other_formats(tmp_path):
    finetuner.fit("dummy-text", TRAIN, callbacks=[MetricsLogger()], output_dir=tmp_path, **FAST)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5
    with pytest.raises(ValueError, match="writes .jsonl or .csv files, not 'log.txt'"):
        MetricsLogger(tmp_path / "log.txt")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_metrics_logger_on_resume_drops_rows_past_the_checkpoint(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    logger = MetricsLogger(path)
    logger.on_train_begin(TrainState())
    for step in range(1, 6):
        logger.on_step_end(TrainState(step=step, loss=1.0 / step))
    logger.on_train_begin(TrainState(step=3))  # resumed from the checkpoint at step 3
    logger.on_step_end(TrainState(step=4, loss=9.0))
    if suffix == ".jsonl":
        rows = [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]
    else:
        rows = [(int(r["step"]), float(r["value"])) for r in csv.DictReader(path.open()) if r["name"] == "loss"]
    assert rows == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3)), (4, 9.0)]


def test_tensorboard_logger_writes_loss_and_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = finetuner.fit(
        "dummy-text", TRAIN, EVAL, epochs=2, eval_every_epochs=1, callbacks=[TensorBoardLogger()], output_dir=tmp_path, **FAST
    )
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/learning_rate", "eval/recall@5", "eval/ndcg@10"} <= set(events.Tags()["scalars"])
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(h["step"], pytest.approx(h["loss"], rel=1e-6)) for h in model.history if "loss" in h]
    assert [e.step for e in events.Scalars("eval/recall@5")] == [5, 10]
    assert np.isclose(events.Scalars("eval/recall@5")[-1].value, model.metrics["after"]["recall@5"])
