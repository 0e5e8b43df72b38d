"""Data readers (CSV, image folders, in-memory, DataFrames) and samplers."""

from finetuner.data.images import IMAGE_EXTENSIONS
from finetuner.data.load import load_data
from finetuner.data.samplers import ClassBalancedBatchSampler, NoDuplicatesBatchSampler, ShuffledBatchSampler
from finetuner.data.types import KINDS, Data, LabeledData, PairData, RetrievalData, ScoredData

__all__ = [
    "IMAGE_EXTENSIONS",
    "KINDS",
    "ClassBalancedBatchSampler",
    "Data",
    "LabeledData",
    "NoDuplicatesBatchSampler",
    "PairData",
    "RetrievalData",
    "ScoredData",
    "ShuffledBatchSampler",
    "load_data",
]
