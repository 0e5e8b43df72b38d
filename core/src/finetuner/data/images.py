"""Recognising image files by name, and checking that they exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def is_image_name(value: Any) -> bool:
    """Whether ``value`` is a string or path whose name ends in an image extension."""
    if isinstance(value, Path):
        value = value.name
    return isinstance(value, str) and Path(value.strip()).suffix.lower() in IMAGE_EXTENSIONS


def is_file(path: Path) -> bool:
    """``path.is_file()`` that answers False instead of raising on odd names (NUL bytes, too long)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
