"""The schema of an artifact's ``finetuner.json``, checked before anything is built from it.

An artifact is a closed world: every path its JSON names (``sources[].files``, a path option
such as ``sources[].options.weights``) is relative and resolves inside the artifact folder, and
:func:`check_files` refuses a folder holding a link that leaves it, or a pickle. Every failure
is an :class:`~finetuner.errors.ArtifactError` naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from finetuner.errors import ArtifactError

READABLE_VERSIONS = (1,)  # the format_version values this release reads; a missing one is 1
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})
PATH_OPTIONS = ("weights",)  # builder options that name a file: inside the artifact, passed resolved
RESERVED_OPTIONS = ("name", "pretrained", "local_dir")  # load() sets them, never the options in the JSON

Kind = tuple[str, Callable[[Any], bool]]  # (what the value must be, in words; the test)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


STRING: Kind = ("a string", lambda v: isinstance(v, str))
STRING_OR_NULL: Kind = ("a string or null", lambda v: v is None or isinstance(v, str))
NAME: Kind = ("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
BOOLEAN: Kind = ("true or false", lambda v: isinstance(v, bool))
POSITIVE: Kind = ("a positive integer", lambda v: _is_int(v) and v > 0)
POSITIVE_OR_NULL: Kind = ("a positive integer or null", lambda v: v is None or (_is_int(v) and v > 0))
OBJECT: Kind = ("an object", lambda v: isinstance(v, dict))
OBJECT_OR_NULL: Kind = ("an object or null", lambda v: v is None or isinstance(v, dict))
LIST_OR_NULL: Kind = ("a list or null", lambda v: v is None or isinstance(v, list))
SOURCES: Kind = ("a list", lambda v: isinstance(v, list))  # empty for a model built by hand: it saves, load refuses it
STRINGS: Kind = ("a list of strings", _strings)
MODALITIES: Kind = ("a non-empty list of strings", lambda v: _strings(v) and bool(v))
POSITIVE_NUMBER: Kind = ("a positive number", lambda v: _real(v) and v > 0)
FRACTION: Kind = ("a number from 0 to below 1", lambda v: _real(v) and 0 <= v < 1)
PROMPTS: Kind = (
    "an object of prompt names to strings",
    lambda v: isinstance(v, dict) and all(bool(k) and isinstance(x, str) for k, x in v.items()),
)
LAYERS: Kind = (
    "an object of non-empty lists of layer names",
    lambda v: isinstance(v, dict) and bool(v) and all(_strings(x) and bool(x) for x in v.values()),
)

# (field, kind, required)
TOP: tuple[tuple[str, Kind, bool], ...] = (
    ("sources", SOURCES, True),
    ("normalize", BOOLEAN, True),
    ("projection_dim", POSITIVE_OR_NULL, True),
    ("finetuner_version", STRING, False),
    ("task", STRING, False),
    ("output_dim", POSITIVE, False),
    ("frozen", STRINGS, False),
    ("metrics", OBJECT, False),
    ("training", OBJECT_OR_NULL, False),
    ("examples", LIST_OR_NULL, False),
    ("lora", OBJECT_OR_NULL, False),
    ("matryoshka_dims", LIST_OR_NULL, False),
    ("quantization_ranges", OBJECT, False),
    ("prompts", PROMPTS, False),
    ("default_prompt_name", STRING_OR_NULL, False),
)
# a LoRA artifact's adapters (see finetuner.lora)
LORA: tuple[tuple[str, Kind, bool], ...] = (
    ("r", POSITIVE, True),
    ("alpha", POSITIVE_NUMBER, True),
    ("dropout", FRACTION, True),
    ("target_modules", LAYERS, True),
    ("base_fingerprint", NAME, True),
)
SOURCE: tuple[tuple[str, Kind, bool], ...] = (
    ("name", NAME, True),
    ("plugin", STRING, True),
    ("plugin_version", STRING, False),
    ("base_model", STRING_OR_NULL, False),
    ("options", OBJECT, True),
    ("modalities", MODALITIES, True),
    ("files", STRING, True),
)


def validate(config: Any, path: Path) -> None:
    """Raise :class:`ArtifactError` naming the first field of ``config`` (read from ``path``) that breaks the schema."""
    _fields(config, TOP, "", path)
    version = config.get("format_version", 1)
    if not _is_int(version) or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise ArtifactError(
            f"{path}: format_version {version!r} is not one this release of finetuner reads ({readable}); "
            f"load it with the finetuner that wrote it (finetuner_version {config.get('finetuner_version', 'unknown')!r})"
        )
    if config.get("lora") is not None:
        _fields(config["lora"], LORA, "lora", path)
    for index, source in enumerate(config["sources"]):
        field = f"sources[{index}]"
        _fields(source, SOURCE, field, path)
        inside(path.parent, source["files"], f"{field}.files", path)
        for option in RESERVED_OPTIONS:
            if option in source["options"]:
                raise ArtifactError(
                    f"{path}: field {field}.options.{option} is not allowed: finetuner.load() sets {', '.join(RESERVED_OPTIONS)}"
                )
        for option in PATH_OPTIONS:
            if option in source["options"]:
                value = source["options"][option]
                if not isinstance(value, str):
                    raise ArtifactError(f"{path}: field {field}.options.{option} must be a path (a string), got {_shown(value)}")
                inside(path.parent, value, f"{field}.options.{option}", path)


def inside(directory: Path, relative: str, field: str, path: Path) -> Path:
    """``directory / relative`` resolved, links followed; ArtifactError unless it stays inside ``directory``."""
    parts = PurePosixPath(relative.replace("\\", "/"))
    if not relative or "\x00" in relative or parts.is_absolute() or ".." in parts.parts:
        raise ArtifactError(
            f"{path}: field {field} must be a relative path inside the artifact folder, got {relative!r}; "
            "absolute and '..' paths are refused"
        )
    try:
        root = directory.resolve()
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise ArtifactError(f"{path}: field {field} ({relative!r}) cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(root):
        raise ArtifactError(f"{path}: field {field} ({relative!r}) leads to {resolved}, outside the artifact folder {root}")
    return resolved


def check_files(directory: Path) -> None:
    """Refuse a folder holding a pickle (any case of suffix) or a link that leads outside it."""
    root = directory.resolve()
    for entry in sorted(directory.rglob("*")):  # links to folders are listed, not followed
        name = entry.relative_to(directory)
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise ArtifactError(
                f"refusing to load {directory}: it carries pickle files ({name}); artifacts hold safetensors and JSON only"
            )
        if entry.is_symlink():
            try:
                target = entry.resolve()
            except (OSError, RuntimeError) as exc:
                raise ArtifactError(f"refusing to load {directory}: the link {name} cannot be resolved: {exc}") from exc
            if not target.is_relative_to(root):
                raise ArtifactError(f"refusing to load {directory}: {name} is a link to {target}, outside the artifact folder")


def _fields(mapping: Any, fields: tuple[tuple[str, Kind, bool], ...], prefix: str, path: Path) -> None:
    if not isinstance(mapping, dict):
        raise ArtifactError(
            f"{path}: {f'field {prefix}' if prefix else 'the top level'} must be an object, got {_shown(mapping)}"
        )
    for key, (what, test), required in fields:
        field = f"{prefix}.{key}" if prefix else key
        if key not in mapping:
            if required:
                raise ArtifactError(f"{path}: field {field} is missing")
            continue
        if not test(mapping[key]):
            raise ArtifactError(f"{path}: field {field} must be {what}, got {_shown(mapping[key])}")


def _shown(value: Any) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    text = repr(value)
    return f"{kind} ({text[:60]}{'...' if len(text) > 60 else ''})"
