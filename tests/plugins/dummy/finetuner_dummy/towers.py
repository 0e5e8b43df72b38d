"""Tiny towers: hashed character trigrams for text, a two-layer CNN on 16x16 images."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import finetuner
from finetuner.models import Tower

BUCKETS = 4096


class TrigramTower(Tower):
    modality = "text"

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.output_dim = dim
        self.bag = nn.EmbeddingBag(BUCKETS, dim, mode="mean")

    def preprocess(self, items):
        ids, offsets = [], []
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise finetuner.DataError(f"text tower: item {index} is {type(text).__name__}, not a string")
            padded = f"  {text.lower()} "
            offsets.append(len(ids))
            ids.extend(zlib.crc32(padded[i : i + 3].encode()) % BUCKETS for i in range(len(padded) - 2))
        return {"ids": torch.tensor(ids, dtype=torch.long), "offsets": torch.tensor(offsets, dtype=torch.long)}

    def forward(self, features):
        return self.run_encoder(self.bag, features["ids"], features["offsets"])

    def item_cost(self, item) -> int:
        return len(item) if isinstance(item, str) else 0


class TinyCNNTower(Tower):
    modality = "image"
    channels_last = True

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.output_dim = dim
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, dim, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def preprocess(self, items):
        pixels = []
        for index, item in enumerate(items):
            try:
                image = Image.open(item) if isinstance(item, (str, Path)) else item
                if isinstance(image, np.ndarray):
                    image = Image.fromarray(image)
                array = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                raise finetuner.DataError(f"image tower: item {index} ({item!r}) is not a readable image: {exc}") from exc
            pixels.append(torch.from_numpy(array).permute(2, 0, 1))
        return {"pixel_values": torch.stack(pixels)}

    def forward(self, features):
        return self.run_encoder(self.net, features["pixel_values"])


def build_text(pretrained: bool = True, local_dir=None, dim: int = 16) -> TrigramTower:
    return TrigramTower(dim)


def build_image(pretrained: bool = True, local_dir=None, dim: int = 16) -> TinyCNNTower:
    return TinyCNNTower(dim)
