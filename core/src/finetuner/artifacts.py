"""Artifacts: a directory anyone can read without finetuner (safetensors + JSON), written atomically.

Layout::

    model.safetensors     every weight, no pickle
    finetuner.json        backbones, plugins and versions, task, projection, normalisation, metrics
    backbone-0/           the first backbone's preprocessing files (tokenizer, config, image config)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from finetuner.errors import ArtifactError

CONFIG_FILE = "finetuner.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def save(
    model: Any, directory: str | Path, *, metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``directory`` atomically: a crash leaves any previous artifact there intact."""
    from safetensors.torch import save_model

    from finetuner import __version__
    from finetuner.plugins import get_manager

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        plugins = get_manager().plugins
        sources = []
        for index, source in enumerate(model.sources):
            files = f"backbone-{index}"
            (tmp / files).mkdir()
            for modality in source["modalities"]:
                model.tower(modality).save_files(tmp / files)
            info = plugins.get(source["plugin"])
            sources.append({**source, "plugin_version": info.version if info else "", "files": files})
        config = {
            "format": "finetuner-artifact",
            "format_version": FORMAT_VERSION,
            "finetuner_version": __version__,
            "task": model.task,
            "output_dim": model.output_dim,
            "projection_dim": model.projection_dim,
            "normalize": model.normalize,
            "sources": sources,
            "frozen": model.frozen_modalities(),
            "metrics": metrics or {},
            **(extra or {}),
        }
        save_model(model, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; an existing target is moved aside first and removed last.

    On failure the previous artifact is back at ``target`` and nothing is left beside it.
    """
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        os.replace(target, old / "artifact")
    except BaseException:
        old.rmdir()
        raise
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / "artifact", target)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_config(directory: str | Path) -> dict[str, Any]:
    """The artifact's JSON, checked for presence and format."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a finetuner artifact: {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if config.get("format") != "finetuner-artifact":
        raise ArtifactError(f"{path} is not a finetuner artifact config")
    return config


def load(directory: str | Path) -> Any:
    """Rebuild the model saved in ``directory``; refuses pickles and mismatched weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from finetuner.models.build import build_towers
    from finetuner.models.embedding import EmbeddingModel

    directory = Path(directory)
    config = read_config(directory)
    pickles = [p for p in directory.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ArtifactError(
            f"refusing to load {directory}: it carries pickle files ({pickles[0].name}); artifacts hold safetensors and JSON only"
        )
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ArtifactError(f"{directory} has no {WEIGHTS_FILE}")
    towers: dict[str, Any] = {}
    sources = []
    for source in config["sources"]:
        built, _, record = build_towers(
            source["name"], pretrained=False, local_dir=str(directory / source["files"]), **source["options"]
        )
        towers.update(built)
        sources.append(record)
    model = EmbeddingModel(
        towers,
        sources=sources,
        output_dim=config["projection_dim"],
        normalize=config["normalize"],
    )
    try:
        load_model(model, str(weights), strict=True)
    except SafetensorError as exc:
        raise ArtifactError(f"{weights} is not a readable safetensors file (truncated, or another format): {exc}") from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"weights in {weights} do not match the model described in {CONFIG_FILE}: {exc}") from exc
    model.freeze(config.get("frozen", []))
    model.metrics = config.get("metrics", {})
    return model
