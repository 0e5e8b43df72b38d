"""Retrieval and similarity metrics, exact chunked top-k search, before/after reports."""

from finetuner.evaluation.evaluate import evaluate
from finetuner.evaluation.report import compare, render

__all__ = ["compare", "evaluate", "render"]
