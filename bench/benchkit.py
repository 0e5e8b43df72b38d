"""What the benchmark scripts share: the data folder, loading a sibling script, one result row, a step clock.

Not a benchmark (bench/run.py runs bench_*.py only). The scripts import it by name: bench/ is on
``sys.path`` whenever one of them or bench/run.py runs as a script (tests add it themselves).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from finetuner.training.callbacks import Callback, TrainState

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
MINILM = "all-MiniLM-L6-v2"


def data_root() -> Path:
    """``$FINETUNER_DATA``, or ``../shared/data`` beside the repository (read at each call: tests point it elsewhere)."""
    return Path(os.environ.get("FINETUNER_DATA", HERE.parents[1] / "shared" / "data"))


def sibling(name: str) -> ModuleType:
    """A fresh copy of the benchmark module ``bench/<name>.py`` (its readers, splits and recipe)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(
    name: str,
    ours: float,
    peer: float,
    unit: str,
    target: str,
    notes: str,
    *,
    digits: int = 1,
    ratio: float | None = None,
    ratio_digits: int = 3,
) -> dict[str, Any]:
    """One comparison as bench/run.py records it; ``ratio`` defaults to ours / peer, and is None when peer is 0."""
    return {
        "benchmark": name,
        "ours": round(ours, digits),
        "peer": round(peer, digits),
        "unit": unit,
        "ratio": round(ratio if ratio is not None else ours / peer, ratio_digits) if peer else None,
        "target": target,
        "notes": notes,
    }


class StepClock(Callback):
    """A fit() callback: the time at training start, each step's end (wall and CPU) and each epoch's end.

    Stops training after ``stop_after`` steps when given.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.begin = 0.0
        self.steps: list[tuple[float, float]] = []
        self.epochs: list[float] = []
        self.stop_after = stop_after

    def on_train_begin(self, state: TrainState) -> None:
        self.begin = time.perf_counter()

    def on_step_end(self, state: TrainState) -> None:
        self.steps.append((time.perf_counter(), time.process_time()))
        if self.stop_after is not None and state.step >= self.stop_after:
            state.stop = True

    def on_epoch_end(self, state: TrainState) -> None:
        self.epochs.append(time.perf_counter())


def mnrl_steps(
    queries: list[str],
    documents: list[str],
    steps: int,
    *,
    batch_size: int,
    max_length: int,
    scale: float,
    seed: int,
    **options: Any,
) -> StepClock:
    """all-MiniLM-L6-v2 trained on CPU with MultipleNegativesRankingLoss for ``steps`` steps, nothing written: its clock."""
    import finetuner
    from finetuner.data import PairData

    model = finetuner.build_model(MINILM, max_length=max_length)
    clock = StepClock(stop_after=steps)
    finetuner.fit(
        model,
        PairData(queries, documents),
        loss="MultipleNegativesRankingLoss",
        loss_options={"scale": scale},
        batch_size=batch_size,
        epochs=1,
        seed=seed,
        device="cpu",
        output_dir=None,
        verbose=False,
        callbacks=[clock],
        **options,
    )
    return clock
