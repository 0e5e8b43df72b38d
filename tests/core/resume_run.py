"""The training run the resume tests kill and resume; the killed subprocess imports it from here."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import finetuner
from finetuner.training.callbacks import Callback

STEPS_PER_EPOCH, EPOCHS = 4, 3
OPTIONS: dict[str, Any] = {"epochs": EPOCHS, "batch_size": 8, "learning_rate": 5e-2, "seed": 3, "verbose": False}


class NoisyInBatchLoss(torch.nn.Module):
    """In-batch negatives with dropout and a jittered temperature: every call consumes all three RNGs."""

    def forward(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        queries = F.dropout(queries, p=0.3, training=True)
        scale = 20.0 * (1.0 + 0.1 * random.random()) * (1.0 + 0.1 * float(np.random.rand()))
        logits = scale * F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T
        return F.cross_entropy(logits, torch.arange(len(queries), device=logits.device))


class CountSteps(Callback):
    """Counts the steps this process ran; sleeps after each one so the test can kill the run in the middle."""

    def __init__(self, delay: float) -> None:
        self.delay, self.steps = delay, 0

    def on_step_end(self, state: Any) -> None:
        self.steps += 1
        time.sleep(self.delay)


def train(
    train_data: str, output_dir: str, noisy: bool, checkpoint_every_steps: int | None, delay: float = 0.0, resume: bool = False
) -> int:
    """The run under test (the killed subprocess calls it too, with ``delay`` > 0); returns how many steps it ran."""
    counter = CountSteps(delay)
    finetuner.fit(
        "dummy-text",
        train_data,
        output_dir=output_dir,
        loss=NoisyInBatchLoss() if noisy else None,
        checkpoint_every_steps=checkpoint_every_steps,
        callbacks=[counter],
        resume=resume,
        **OPTIONS,
    )
    return counter.steps
