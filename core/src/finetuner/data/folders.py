"""An image folder tree ``root/<label>/<image files>`` -> :class:`LabeledData`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from finetuner.data.images import IMAGE_EXTENSIONS, is_file
from finetuner.data.types import LabeledData
from finetuner.errors import DataError

logger = logging.getLogger("finetuner")


def read_image_folder(root: Path) -> LabeledData:
    """Every image under ``root``, labelled with its folder's path relative to ``root``.

    Nested trees work: ``root/Alphabet/character01/x.png`` gets the label
    ``"Alphabet/character01"``. Hidden files and folders are skipped, and so are images
    directly in ``root`` (they have no label). Images are not opened here.
    """
    root = root.absolute()

    def fail(error: OSError) -> None:
        raise DataError(f"cannot read folder {error.filename}: {error.strerror or error}")

    items: list[Path] = []
    labels: list[str] = []
    unlabeled = 0
    for folder, subfolders, files in os.walk(root, onerror=fail):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        here = Path(folder)
        images = [
            here / name for name in sorted(files) if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
        images = [path for path in images if is_file(path)]
        if here == root:
            unlabeled = len(images)
            continue
        label = here.relative_to(root).as_posix()
        items.extend(images)
        labels.extend([label] * len(images))
    if unlabeled:
        logger.warning("skipped %d image(s) directly in %s: they have no label folder", unlabeled, root)
    if not items:
        raise DataError(
            f"no images found in label folders under {root}: expected root/<label>/<image> with extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    data = LabeledData(items=items, labels=labels, source=str(root))
    logger.info(
        "read %s images in %s classes from %s (folder tree root/<label>/<image>)",
        f"{len(items):,}",
        f"{len(set(labels)):,}",
        root,
    )
    return data
