"""Embedding models: towers (an encoder with its preprocessing), pooling, projection."""

from finetuner.models.embedding import EmbeddingModel
from finetuner.models.pooling import GeM, TokenPooling, pool_tokens
from finetuner.models.tower import Tower

__all__ = ["EmbeddingModel", "GeM", "TokenPooling", "Tower", "pool_tokens"]
