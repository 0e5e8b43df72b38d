"""Retrieval and similarity metrics, exact chunked top-k search, example queries; :func:`evaluate` runs them.

The tables that show the numbers are in :mod:`finetuner.report.metrics`.
"""

from finetuner.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
