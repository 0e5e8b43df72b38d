"""Embedding models: towers (an encoder with its preprocessing), pooling, projection.

With :mod:`finetuner`, this is the API plugins build on: every other module is internal.
"""

from finetuner.models.augment import ImageAugmentation
from finetuner.models.embedding import SIGLIP_INITIAL_LOGIT_BIAS, SIGLIP_INITIAL_LOGIT_SCALE, EmbeddingModel
from finetuner.models.pooling import TOKEN_POOLINGS, GeM, TokenPooling, pool_tokens
from finetuner.models.tower import Tower

__all__ = [
    "SIGLIP_INITIAL_LOGIT_BIAS",
    "SIGLIP_INITIAL_LOGIT_SCALE",
    "TOKEN_POOLINGS",
    "EmbeddingModel",
    "GeM",
    "ImageAugmentation",
    "TokenPooling",
    "Tower",
    "pool_tokens",
]
