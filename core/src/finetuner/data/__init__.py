"""Data readers (CSV, image folders, in-memory, DataFrames) and samplers."""

from finetuner.data.types import KINDS, Data, LabeledData, PairData, RetrievalData, ScoredData

__all__ = ["KINDS", "Data", "LabeledData", "PairData", "RetrievalData", "ScoredData"]
