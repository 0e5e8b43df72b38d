"""What a sentence-transformers folder says, read from its JSON files (no torch, no transformers).

``modules.json`` lists the modules in order: the Transformer (at the folder root), Pooling, then
any Dense and Normalize modules. A final Normalize is the model's own L2 normalisation
(``normalize=True``, the default), so the tower leaves it out. ``config_sentence_transformers.json`` holds the prompts, the
default prompt name and the similarity function. A folder without ``modules.json`` is a
Transformer and, when ``1_Pooling/config.json`` is there, its Pooling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetuner_text.sources import read_json

MODULES_FILE = "modules.json"
POOLING_PATH = "1_Pooling"
ST_MODEL_FILE = "config_sentence_transformers.json"
KINDS = ("Transformer", "Pooling", "Dense", "Normalize")  # the module types finetuner reads, by class name
# sentence-transformers' pooling flags (before version 5) and names (5 on), and the mode each one means here
POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}
POOLING_NAMES = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "last"}
SIMILARITIES = ("cosine", "dot")  # finetuner ranks by cosine; a dot-product model's folder reads as it is


@dataclass
class Module:
    """One entry of ``modules.json``: its class name, its folder (relative) and its ``config.json``."""

    kind: str
    path: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Layout:
    """A folder's modules after the Transformer and its model config."""

    pooling: str | None = None  # None: the folder names no pooling (finetuner's default, mean)
    after_pooling: list[Module] = field(default_factory=list)  # Dense and Normalize modules, in order, but a last Normalize
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str = "cosine"


def read_layout(source: str, read_pooling: bool = True) -> Layout:
    """The layout of a model folder or hub model; a module finetuner cannot run raises ValueError naming it and ``source``.

    ``read_pooling=False`` leaves the Pooling config unread (the caller names the pooling).
    """
    entries = read_json(source, MODULES_FILE, download=True)
    if entries is None:
        entries = [{"type": "Transformer", "path": ""}, {"type": "Pooling", "path": POOLING_PATH}]
    elif not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in entries):
        raise ValueError(f"{MODULES_FILE} of {source} is not a list of modules with a type each")
    layout = Layout()
    for index, entry in enumerate(entries):
        module = _module(source, index, entry)
        allowed = ("Transformer",) if index == 0 else ("Pooling",) if index == 1 else ("Dense", "Normalize")
        if module.kind not in allowed:
            raise ValueError(
                f"{MODULES_FILE} of {source}: module {index} ({entry['type']}) should be a {' or '.join(allowed)}: "
                "finetuner reads a Transformer, its Pooling, then Dense and Normalize modules"
            )
        if index == 0 and module.path not in ("", "."):
            raise ValueError(
                f"{MODULES_FILE} of {source}: the Transformer is in {module.path!r}; finetuner reads it at the folder root"
            )
        if module.kind == "Pooling" and read_pooling:
            layout.pooling = pooling_mode(module.config, f"{module.path}/config.json of {source}") if module.config else None
        elif index > 1:
            layout.after_pooling.append(module)
    while layout.after_pooling and layout.after_pooling[-1].kind == "Normalize":  # the model's own normalize=True
        layout.after_pooling.pop()
    layout.prompts, layout.default_prompt_name, layout.similarity_fn_name = model_config(source)
    return layout


def _module(source: str, index: int, entry: dict[str, Any]) -> Module:
    kind = entry["type"].rsplit(".", 1)[-1]
    if kind not in KINDS or not (entry["type"] == kind or entry["type"].startswith("sentence_transformers.")):
        raise ValueError(
            f"{MODULES_FILE} of {source}: module {index} ({entry.get('name', index)!r}, type {entry['type']}) "
            f"is not one finetuner can run; it reads {', '.join(KINDS)}"
        )
    path = str(entry.get("path", ""))
    config = {}
    if kind in ("Dense", "Pooling") and index > 0:
        config = read_json(source, f"{path}/config.json", download=True)
        if config is None and kind == "Dense":
            raise ValueError(f"{MODULES_FILE} of {source}: the Dense module {index} has no {path}/config.json")
    return Module(kind, path, config or {})


def pooling_mode(config: dict[str, Any], where: str) -> str:
    """The one pooling mode of a Pooling ``config.json`` (flags or names); several, or another, raise ValueError."""
    from finetuner.models import TOKEN_POOLINGS

    if "pooling_mode" in config:  # sentence-transformers 5+ name the mode(s)
        named = config["pooling_mode"]
        modes = [POOLING_NAMES.get(m, m) for m in (list(named) if isinstance(named, (list, tuple)) else [named])]
    else:  # older ones set one boolean flag per mode
        modes = [POOLING_FLAGS.get(k, k) for k, v in config.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or modes[0] not in TOKEN_POOLINGS:
        raise ValueError(f"{where} asks for pooling {modes}; finetuner supports one of {TOKEN_POOLINGS}: pass pooling=")
    if config.get("include_prompt", True) is False:
        raise ValueError(
            f"{where} sets include_prompt false (pooling leaves the prompt's tokens out), which finetuner does not do"
        )
    return modes[0]


def model_config(source: str) -> tuple[dict[str, str], str | None, str]:
    """``config_sentence_transformers.json``'s prompts, default prompt name and similarity function (checked)."""
    config = read_json(source, ST_MODEL_FILE, download=True) or {}
    where = f"{ST_MODEL_FILE} of {source}"
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ValueError(f"{where}: prompts must map prompt names to strings, got {prompts!r}")
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ValueError(f"{where}: default_prompt_name {default!r} is none of its prompts ({', '.join(prompts) or 'none'})")
    similarity = config.get("similarity_fn_name") or "cosine"
    similarity = "dot" if similarity == "dot_product" else similarity
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"{where}: similarity_fn_name {similarity!r} is not supported; finetuner trains and ranks by cosine "
            f"similarity and reads models made for one of {', '.join(SIMILARITIES)}"
        )
    return prompts, default, similarity


def output_dim(source: str, hidden: int) -> int:
    """The embedding size of the folder's model: the last Dense module's ``out_features``, else ``hidden``."""
    entries = read_json(source, MODULES_FILE, download=True)
    dense = (
        [e for e in entries if isinstance(e, dict) and str(e.get("type")).endswith("Dense")] if isinstance(entries, list) else []
    )
    config = read_json(source, f"{dense[-1].get('path', '')}/config.json", download=True) if dense else None
    return config["out_features"] if config and isinstance(config.get("out_features"), int) else hidden
