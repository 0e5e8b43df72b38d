"""Data shared by the core tests that is not a test module's own (see also ``test_fit``'s generators)."""

from __future__ import annotations

import random


def pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (query, document) pairs over 8 topics; a query and its document share the topic word (reversed)."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    return [
        (f"{words[i % 8]} question {rng.randint(0, 10**6)}", f"notes on {words[i % 8][::-1]} {rng.randint(0, 10**6)}")
        for i in range(n)
    ]
