"""Where a model's files are: a local folder or the Hugging Face cache. Imports no torch/transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetuner import ModelNotAvailableError

DIM_KEYS = ("hidden_size", "dim", "d_model")


def local_folder(source: str) -> Path | None:
    """``source`` as a folder when it is one on disk, else None (it is then a hub id)."""
    path = Path(source).expanduser()
    return path if path.is_dir() else None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_file(source: str, filename: str) -> Path | None:
    """A file of a local folder or of a hub model already in the cache; never touches the network."""
    folder = local_folder(source)
    if folder is not None:
        path = folder / filename
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source, filename)
    except ValueError:  # not a valid repo id either
        return None
    return Path(found) if isinstance(found, str) else None


def fetch_file(source: str, filename: str) -> Path | None:
    """Like :func:`cached_file`, but online (no ``HF_HUB_OFFLINE``) a missing hub file is downloaded."""
    path = cached_file(source, filename)
    if path is not None or local_folder(source) is not None or hub_offline():
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, filename))
    except Exception:  # absent from the repo, or the hub is unreachable: the file is optional
        return None


def read_json(source: str, filename: str, download: bool = False) -> dict[str, Any] | None:
    """A JSON file of a model folder or cached hub model (downloaded if ``download`` and online), or None."""
    path = fetch_file(source, filename) if download else cached_file(source, filename)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def embedding_dim(config: dict[str, Any], where: str) -> int:
    """The hidden size of a transformers config (``hidden_size``, ``dim`` or ``d_model``)."""
    for key in DIM_KEYS:
        if isinstance(config.get(key), int):
            return config[key]
    raise ValueError(f"{where} has none of {', '.join(DIM_KEYS)}: cannot tell the embedding size")


def not_available(source: str, detail: str = "") -> ModelNotAvailableError:
    """The error for a model whose files are neither in a local folder nor in the Hugging Face cache."""
    if not detail:
        if local_folder(source) is not None:
            detail = f"the folder {source} has no config.json"
        elif Path(source).expanduser().is_absolute() or source.startswith((".", "~")) or source.count("/") > 1:
            detail = f"there is no folder {source}"
        else:
            detail = f"it is not in the Hugging Face cache ({hub_cache()})" + (
                " and HF_HUB_OFFLINE is set" if hub_offline() else ""
            )
    return ModelNotAvailableError(
        f"model {source!r} is not available offline: {detail}. "
        "Give a local folder (config.json, tokenizer files and, for pretrained=True, weights) "
        "as 'hf:/path/to/folder', or download it once with network access so it is cached; "
        "pretrained=False builds random weights and needs only the config and tokenizer files."
    )
