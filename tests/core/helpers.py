"""Data and tools shared by the core tests (test modules import from here, never from each other)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

TOPICS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
INSTALLED = sorted(ep.name for ep in entry_points(group="finetuner"))  # the plugins tox installed


def topic_pairs(n: int = 120, seed: int = 0, topics: int = 10) -> list[tuple[str, str]]:
    """``n`` (query, document) pairs over ``topics`` topics; a query and its document share the topic word (reversed)."""
    rng = random.Random(seed)
    words = TOPICS[:topics]
    return [
        (f"{words[i % topics]} question {rng.randint(0, 10**6)}", f"notes on {words[i % topics][::-1]} {rng.randint(0, 10**6)}")
        for i in range(n)
    ]


def pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """:func:`topic_pairs` over 8 topics."""
    return topic_pairs(n, seed, topics=8)


def quiet_fit(model: Any, *data: Any, **options: Any) -> Any:
    """``finetuner.fit`` that prints nothing and, unless ``options`` name an ``output_dir``, writes nothing."""
    import finetuner

    return finetuner.fit(model, *data, **{"output_dir": None, "verbose": False, **options})


def coloured_images(n_per_class: int = 12, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """16x16 noisy images of four colours, labelled by colour."""
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "grey": (120, 120, 120)}
    images, labels = [], []
    for name, rgb in colours.items():
        for _ in range(n_per_class):
            noise = rng.integers(-40, 40, size=(16, 16, 3))
            images.append(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))
            labels.append(name)
    return images, labels


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m finetuner ARGS`` in a fresh process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "finetuner", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def assert_checkpointing_changes_nothing(model: Any, items: list[Any]) -> None:
    """``model``'s tower with gradient checkpointing on gives the same embeddings of ``items`` and the same
    gradients as without (training mode, dropout included: one seed for both)."""
    import copy

    import torch

    checkpointed = copy.deepcopy(model)
    checkpointed.tower().set_gradient_checkpointing(True)
    results = []
    for candidate in (model, checkpointed):
        candidate.train()
        torch.manual_seed(0)
        embeddings = candidate(candidate.tower().preprocess(items))
        (embeddings * torch.arange(1.0, 1 + embeddings.shape[1])).sum().backward()
        results.append((embeddings.detach(), {n: p.grad for n, p in candidate.named_parameters() if p.grad is not None}))
    (expected, expected_grads), (actual, grads) = results
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert set(grads) == set(expected_grads)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
