"""Fixtures for the vision plugin: sample images and empty, isolated weight caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def rgb_array() -> np.ndarray:
    """A 96x128 RGB picture with structure (gradients and a block), as HWC uint8."""
    y, x = np.mgrid[0:96, 0:128]
    array = np.stack([x * 2, y * 2, (x + y) % 256], axis=-1).astype(np.uint8)
    array[20:60, 30:90] = (250, 10, 120)
    return array


@pytest.fixture
def image_files(tmp_path: Path, rgb_array: np.ndarray) -> dict[str, Path]:
    """The picture as PNG (lossless), JPEG and grayscale PNG, plus a corrupt file."""
    files = {
        "png": tmp_path / "pic.png",
        "jpg": tmp_path / "pic.jpg",
        "gray": tmp_path / "gray.png",
        "corrupt": tmp_path / "broken.jpg",
    }
    Image.fromarray(rgb_array).save(files["png"])
    Image.fromarray(rgb_array).save(files["jpg"], quality=90)
    Image.fromarray(rgb_array).convert("L").save(files["gray"])
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return files


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME: torchvision looks for official weights in its hub/checkpoints."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in hub layout, offline (huggingface_hub reads its paths at import)."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home
