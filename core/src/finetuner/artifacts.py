"""Artifacts: a directory anyone can read without finetuner (safetensors + JSON), written atomically.

Layout::

    model.safetensors     every weight, no pickle (a LoRA model: its adapters and head; the base is rebuilt by name)
    finetuner.json        backbones, plugins and versions, task, projection, normalisation, prompts, metrics
    backbone-0/           the first backbone's preprocessing files (tokenizer, config, image config)
    README.md             a Hugging Face model card (see :mod:`finetuner.model_card`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from finetuner._atomic import check_target, current, write_folder
from finetuner.artifact_schema import PATH_OPTIONS, READABLE_VERSIONS, check_files, inside, validate
from finetuner.errors import ArtifactError, FinetunerError, OptionError

ARTIFACT_FORMAT = "finetuner-artifact"
CONFIG_FILE = "finetuner.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = READABLE_VERSIONS[-1]  # what save() writes


def save(
    model: Any,
    directory: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` atomically: a crash leaves any previous artifact there intact.

    ``directory`` is replaced only when it is missing, an empty folder or a finetuner artifact;
    anything else (a file, a folder of your own) raises :class:`ArtifactError` unless ``overwrite=True``.
    """
    from safetensors.torch import save_model

    from finetuner import __version__
    from finetuner.calibration import ranges_record
    from finetuner.model_card import write_model_card
    from finetuner.plugins import get_manager
    from finetuner.prompts import default_prompt_name, prompts_of

    target = Path(directory)
    check_artifact_dir(target, overwrite=overwrite)
    with write_folder(target) as tmp:
        plugins = get_manager().plugins
        sources = []
        for index, source in enumerate(model.sources):
            files = f"backbone-{index}"
            (tmp / files).mkdir()
            for modality in source["modalities"] if model.lora is None else ():  # LoRA: rebuilt from the base at load
                model.tower(modality).save_files(tmp / files)
            info = plugins.get(source["plugin"])
            sources.append({**source, "plugin_version": info.version if info else "", "files": files})
        config = {
            "format": ARTIFACT_FORMAT,
            "format_version": FORMAT_VERSION,
            "finetuner_version": __version__,
            "task": model.task,
            "output_dim": model.output_dim,
            "projection_dim": model.projection_dim,
            "normalize": model.normalize,
            "sources": sources,
            "frozen": model.frozen_modalities(),
            "metrics": metrics or {},
            "matryoshka_dims": list(model.matryoshka_dims) if model.matryoshka_dims else None,
            "quantization_ranges": ranges_record(model.quantization_ranges),
            "prompts": prompts_of(model),
            "default_prompt_name": default_prompt_name(model),
            **(extra or {}),
        }
        if model.lora is None:
            save_model(model, str(tmp / WEIGHTS_FILE))
        else:
            from safetensors.torch import save_file

            from finetuner.lora import adapter_state, record

            config["lora"] = record(model)
            save_file(adapter_state(model), str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        write_model_card(tmp, config, location=target)
    return target


def update_config(directory: str | Path, **fields: Any) -> None:
    """Set top-level ``fields`` of an artifact's JSON in place (the weights are untouched); the file is replaced atomically."""
    directory = current(Path(directory))
    config = {**read_config(directory), **fields}
    validate(config, directory / CONFIG_FILE)
    staged = directory / f".{CONFIG_FILE}.tmp"
    staged.write_text(json.dumps(config, indent=2, default=str))
    os.replace(staged, directory / CONFIG_FILE)


def check_artifact_dir(directory: Path, *, overwrite: bool = False) -> None:
    """Raise :class:`ArtifactError` unless ``directory`` may take an artifact: missing, empty, an artifact, or ``overwrite``."""
    check_target(directory, ours=is_artifact, what="a finetuner artifact", overwrite=overwrite)


def is_artifact(directory: Path) -> bool:
    """Whether ``directory`` holds an artifact's JSON (what :func:`save` may replace)."""
    try:
        return json.loads((directory / CONFIG_FILE).read_text()).get("format") == ARTIFACT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_config(directory: str | Path) -> dict[str, Any]:
    """The artifact's JSON, checked for presence, format and schema (see :mod:`finetuner.artifact_schema`)."""
    path = current(Path(directory)) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a finetuner artifact: {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not readable JSON: {exc}") from exc
    if isinstance(config, dict) and config.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path} is not a finetuner artifact config (its field format is not {ARTIFACT_FORMAT!r})")
    validate(config, path)
    return config


def load(directory: str | Path) -> Any:
    """Rebuild the model saved in ``directory``.

    Raises :class:`ArtifactError` for a JSON that breaks its schema, a path or link leading out of
    the folder, a pickle, a backbone name that now belongs to another plugin than the recorded
    one (checked before anything is built), and weights that do not fit or are not finite.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from finetuner.models.embedding import EmbeddingModel

    directory = current(Path(directory))
    config = read_config(directory)
    check_files(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ArtifactError(f"{directory} has no {WEIGHTS_FILE}")
    if not config["sources"]:
        raise ArtifactError(
            f"{directory} holds a model built by hand (no backbone sources in {CONFIG_FILE}): finetuner cannot rebuild it; "
            f"build the same model yourself and read {WEIGHTS_FILE} into it with safetensors.torch.load_model"
        )
    for index, source in enumerate(config["sources"]):
        _check_plugin(directory, index, source, _needs_base(config))
    towers: dict[str, Any] = {}
    sources = []
    lora = config.get("lora")
    for index, source in enumerate(config["sources"]):
        built, record = _rebuild(directory, index, source, _needs_base(config))
        if set(built) & set(towers):
            raise ArtifactError(
                f"{directory / CONFIG_FILE}: sources[{index}] builds {list(built)} towers, as an earlier source does"
            )
        towers.update(built)
        sources.append({**record, "base_model": source.get("base_model")})
    try:
        model = EmbeddingModel(towers, sources=sources, output_dim=config["projection_dim"], normalize=config["normalize"])
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{directory / CONFIG_FILE} describes no model that can be built: {exc}") from exc
    try:
        _match_logits(model, str(weights))
        if lora is None:
            load_model(model, str(weights), strict=True)
        else:
            from safetensors.torch import load_file

            from finetuner.lora import load_adapters

            load_adapters(model, lora, load_file(str(weights)), str(directory))
    except SafetensorError as exc:
        raise ArtifactError(f"{weights} is not a readable safetensors file (truncated, or another format): {exc}") from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"weights in {weights} do not match the model described in {CONFIG_FILE}: {exc}") from exc
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise ArtifactError(f"weights in {weights} are not finite: tensor {name!r} holds NaN or infinite values")
    frozen = config.get("frozen", [])
    if set(frozen) - set(model.modalities):
        raise ArtifactError(
            f"{directory / CONFIG_FILE}: field frozen names {frozen}, but the model's towers are {model.modalities}"
        )
    model.freeze(frozen)
    model.metrics = config.get("metrics", {})
    _restore_truncation(model, config, directory / CONFIG_FILE)
    _restore_prompts(model, config, directory / CONFIG_FILE)
    return model


def _match_logits(model: Any, weights: str) -> None:
    """Give the model the SigLIP bias its weights hold (SigLIPLoss adds one), or none where they hold none."""
    from safetensors import safe_open

    with safe_open(weights, "pt") as saved:
        held = "logit_bias" in saved.keys()
    if held:
        model.add_logit_bias()  # and a temperature where it had none; the weights give their values
    else:
        model.logit_bias = None  # the backbone has one, but the artifact predates finetuner keeping it


def _restore_prompts(model: Any, config: dict[str, Any], path: Path) -> None:
    """The prompts the JSON records (an artifact from before prompts keeps the tower's own)."""
    from finetuner.prompts import set_prompts

    if "prompts" not in config:
        return
    try:
        set_prompts(model, config["prompts"], config.get("default_prompt_name"))
    except FinetunerError as exc:
        raise ArtifactError(f"{path}: field prompts: {exc}") from exc


def _restore_truncation(model: Any, config: dict[str, Any], path: Path) -> None:
    """The Matryoshka dims and quantization ranges the JSON records, checked against the model's output dimension."""
    from finetuner.calibration import read_ranges
    from finetuner.truncation import check_matryoshka_dims

    try:
        dims = config.get("matryoshka_dims")
        model.matryoshka_dims = check_matryoshka_dims(dims, model.output_dim) if dims else None
        model.quantization_ranges = read_ranges(config.get("quantization_ranges") or {}, model.output_dim)
    except OptionError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc


def _needs_base(config: dict[str, Any]) -> str:
    """What a LoRA artifact needs to load, as the end of an error message; empty for any other artifact."""
    return (
        "; it holds LoRA adapters only, so their base model's pretrained weights must be available" if config.get("lora") else ""
    )


def _check_plugin(directory: Path, index: int, source: dict[str, Any], needs: str) -> None:
    """Refuse a backbone whose name no longer resolves, or resolves to another plugin than the one that made it."""
    from finetuner.registry import get_spec

    name, plugin = source["name"], source["plugin"]
    made = f"{directory}: its backbone {name!r} (sources[{index}]) was made with plugin {plugin!r}{needs}"
    try:
        spec = get_spec(name, str(directory / source["files"]))
    except Exception as exc:  # an unknown name, a name two plugins claim, a resolver that fails on it
        raise ArtifactError(f"cannot load {made}, and here {type(exc).__name__}: {exc}") from exc
    if spec.plugin != plugin:
        raise ArtifactError(
            f"cannot load {made}, but here that name belongs to plugin {spec.plugin!r}. Install {plugin!r}, "
            f"or set FINETUNER_DISABLE_PLUGINS={spec.plugin} if {spec.plugin!r} should not have it"
        )


def _rebuild(directory: Path, index: int, source: dict[str, Any], needs: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One backbone's towers, built from its recorded options and files (random weights), and its source record.

    The base of a LoRA artifact (``needs`` says so) is built from the backbone's name with its pretrained weights.
    """
    from finetuner.models.build import build_towers

    field = f"sources[{index}]"
    options = dict(source["options"])
    for option in PATH_OPTIONS:
        if option in options:
            options[option] = str(inside(directory, options[option], f"{field}.options.{option}", directory / CONFIG_FILE))
    try:
        if needs:
            built, _, record = build_towers(source["name"], pretrained=True, **options)
        else:
            built, _, record = build_towers(
                source["name"], pretrained=False, local_dir=str(directory / source["files"]), **options
            )
    except ArtifactError:
        raise
    except FinetunerError as exc:
        raise ArtifactError(f"cannot rebuild backbone {source['name']!r} ({field}) of {directory}{needs}: {exc}") from exc
    if sorted(built) != sorted(source["modalities"]):
        raise ArtifactError(
            f"{directory / CONFIG_FILE}: field {field}.modalities is {source['modalities']}, "
            f"but {source['name']!r} builds {list(built)} towers"
        )
    return built, record
